"""Tests of the plugin-author experience: the examples and docs/writing-a-plugin.md work as shown."""

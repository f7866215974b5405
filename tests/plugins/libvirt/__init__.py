"""The libvirt instance plugin: pure decisions, and against a real private libvirtd."""

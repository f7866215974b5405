"""The default group controller (InfraKit's ``group`` plugin), written to be read.

``spec`` validates group specs; ``hash`` computes InfraKit's config hash; ``reconcile`` holds the
pure decision rules; ``plan`` the commit plans; ``state`` what is remembered between passes;
``controller`` runs it all; ``kind`` serves it as a plugin.
"""

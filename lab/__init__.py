"""The lab platform: Debian 12 machines (systemd-nspawn) in a project-owned network namespace.

``image`` builds the root filesystem like a Vultr snapshot, ``netns`` owns the namespace and
its bridges, ``machine`` boots and stops one machine, ``hypervisor`` is the command line the
Pulumi program calls to create and delete machines (as Vultr's API is called on prod).
"""

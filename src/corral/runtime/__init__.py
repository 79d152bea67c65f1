"""The container runtime: create namespaces, set up the root, exec the init.

``spawn`` holds the fork/unshare/pivot_root sequence, ``rootfs`` the
declarative mount table, ``exec`` joins a running container.  Everything here
runs in the CLI's (single-threaded) process or in its forked children, so no
Python interpreter is started per container and none stays behind.
"""

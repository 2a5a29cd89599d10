"""Real components for the test suite: a Samba AD DC in a loopback-only network namespace,
gssproxy, local users, and an SMB client that plays the kernel's part."""

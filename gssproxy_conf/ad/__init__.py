"""The directory side: which AD attributes to change (``changes``), and three renderings of
the same changes (``ldif``, ``samba_tool``, ``powershell``). ``security_descriptor`` encodes
the RBCD attribute value."""

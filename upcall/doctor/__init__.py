"""`cifs-upcall doctor` and `cifs-upcall explain`: check the live system the way an upcall uses it.

An admin command, run as root from a shell (not by request-key). Layout:
    report    Status, Check: one line `ok|warn|FAIL <check>: <what>; fix: <what to do>`
    facts     what was gathered (dataclasses)
    checks    pure functions facts -> Check (unit-tested without root)
    kerberos  minimal AS-REQ / KRB-ERROR DER and the keytab format (pure)
    gather    the thin edges: request-key -D, stat, files, the KDC, gssproxy, GSSAPI children
    cli       argument parsing, order of the checks, output
"""

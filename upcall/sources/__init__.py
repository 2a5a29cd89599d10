"""Credential sources: each turns a request into a krb5 token or a classified failure.

`local` runs in the caller's namespaces as the caller (own ccache, then the `user=` keytab);
`proxy` (gssproxy impersonation) runs in the host namespaces.
"""

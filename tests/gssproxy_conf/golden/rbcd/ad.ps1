# Directory changes for FS-CLIENT1$@EXAMPLE.COM. Re-runnable: only what is missing
# is added; other bits, values and grants are kept.
Import-Module ActiveDirectory
$ErrorActionPreference = 'Stop'
Set-ADAccountControl -Identity 'FS-CLIENT1$' -TrustedToAuthForDelegation $true
# fs1.example.com: accept delegated tickets from FS-CLIENT1$ (RBCD)
$trustee = (Get-ADComputer -Identity 'FS-CLIENT1$')
$now = @((Get-ADComputer -Identity 'FS1$' -Properties PrincipalsAllowedToDelegateToAccount).PrincipalsAllowedToDelegateToAccount)
if ($now -notcontains $trustee.DistinguishedName) { Set-ADComputer -Identity 'FS1$' -PrincipalsAllowedToDelegateToAccount (@($now) + $trustee.DistinguishedName) }
# files.dept.example.com: accept delegated tickets from FS-CLIENT1$ (RBCD)
$trustee = (Get-ADComputer -Identity 'FS-CLIENT1$')
$now = @((Get-ADComputer -Identity 'FILESRV7$' -Properties PrincipalsAllowedToDelegateToAccount).PrincipalsAllowedToDelegateToAccount)
if ($now -notcontains $trustee.DistinguishedName) { Set-ADComputer -Identity 'FILESRV7$' -PrincipalsAllowedToDelegateToAccount (@($now) + $trustee.DistinguishedName) }
# nfs1.example.com: accept delegated tickets from FS-CLIENT1$ (RBCD)
$trustee = (Get-ADComputer -Identity 'FS-CLIENT1$')
$now = @((Get-ADComputer -Identity 'NFS1$' -Properties PrincipalsAllowedToDelegateToAccount).PrincipalsAllowedToDelegateToAccount)
if ($now -notcontains $trustee.DistinguishedName) { Set-ADComputer -Identity 'NFS1$' -PrincipalsAllowedToDelegateToAccount (@($now) + $trustee.DistinguishedName) }
Set-ADAccountControl -Identity 'backup' -AccountNotDelegated $true
Set-ADAccountControl -Identity 'svc-db' -AccountNotDelegated $true

# Directory changes for FS-CLIENT1$@EXAMPLE.COM. Re-runnable: only what is missing
# is added; other bits, values and grants are kept.
Import-Module ActiveDirectory
$ErrorActionPreference = 'Stop'
Set-ADAccountControl -Identity 'FS-CLIENT1$' -TrustedToAuthForDelegation $true
$have = @((Get-ADComputer -Identity 'FS-CLIENT1$' -Properties 'msDS-AllowedToDelegateTo').'msDS-AllowedToDelegateTo')
$add = @(@('cifs/fs1.example.com', 'cifs/fs2.example.com') | Where-Object { $have -notcontains $_ })
if ($add.Count) { Set-ADComputer -Identity 'FS-CLIENT1$' -Add @{'msDS-AllowedToDelegateTo' = $add} }
Set-ADAccountControl -Identity 'svc-backup' -AccountNotDelegated $true

# Directory changes for FS-CLIENT1$@EXAMPLE.COM (protocol-transition).
Import-Module ActiveDirectory
$ErrorActionPreference = 'Stop'
Set-ADAccountControl -Identity 'FS-CLIENT1$' -TrustedToAuthForDelegation $true
Set-ADComputer -Identity 'FS-CLIENT1$' -Replace @{'msDS-AllowedToDelegateTo' = @('cifs/fs1.example.com','cifs/fs2.example.com')}
Set-ADAccountControl -Identity 'svc-backup' -AccountNotDelegated $true

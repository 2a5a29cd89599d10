# Directory changes for FS-CLIENT1$@EXAMPLE.COM (rbcd).
Import-Module ActiveDirectory
$ErrorActionPreference = 'Stop'
Set-ADAccountControl -Identity 'FS-CLIENT1$' -TrustedToAuthForDelegation $true
# fs1.example.com: accept delegated tickets from FS-CLIENT1$ (RBCD)
$sd = New-Object System.Security.AccessControl.RawSecurityDescriptor -ArgumentList 'O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-3807959304-1175216678-3803665181-1105)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-3807959304-1175216678-3803665181-1200)'
$bytes = New-Object byte[] ($sd.BinaryLength)
$sd.GetBinaryForm($bytes, 0)
Set-ADComputer -Identity 'FS1$' -Replace @{'msDS-AllowedToActOnBehalfOfOtherIdentity' = $bytes}
# files.dept.example.com: accept delegated tickets from FS-CLIENT1$ (RBCD)
$sd = New-Object System.Security.AccessControl.RawSecurityDescriptor -ArgumentList 'O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-3807959304-1175216678-3803665181-1105)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-3807959304-1175216678-3803665181-1200)'
$bytes = New-Object byte[] ($sd.BinaryLength)
$sd.GetBinaryForm($bytes, 0)
Set-ADComputer -Identity 'FILESRV7$' -Replace @{'msDS-AllowedToActOnBehalfOfOtherIdentity' = $bytes}
# nfs1.example.com: accept delegated tickets from FS-CLIENT1$ (RBCD)
$sd = New-Object System.Security.AccessControl.RawSecurityDescriptor -ArgumentList 'O:BAD:(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-3807959304-1175216678-3803665181-1105)(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;S-1-5-21-3807959304-1175216678-3803665181-1200)'
$bytes = New-Object byte[] ($sd.BinaryLength)
$sd.GetBinaryForm($bytes, 0)
Set-ADComputer -Identity 'NFS1$' -Replace @{'msDS-AllowedToActOnBehalfOfOtherIdentity' = $bytes}
Set-ADAccountControl -Identity 'backup' -AccountNotDelegated $true
Set-ADAccountControl -Identity 'svc-db' -AccountNotDelegated $true

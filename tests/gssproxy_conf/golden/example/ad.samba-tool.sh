#!/bin/sh
# Directory changes for FS-CLIENT1$@EXAMPLE.COM (protocol-transition).
set -e
samba-tool delegation for-any-protocol 'FS-CLIENT1$' on
samba-tool delegation add-service 'FS-CLIENT1$' cifs/fs1.example.com
samba-tool delegation add-service 'FS-CLIENT1$' cifs/fs2.example.com
samba-tool user sensitive svc-backup on

#!/bin/sh
# Directory changes for FS-CLIENT1$@EXAMPLE.COM (rbcd).
set -e
# add-principal adds to the existing descriptor: the other SIDs stay.
samba-tool delegation for-any-protocol 'FS-CLIENT1$' on
samba-tool delegation add-principal 'FS1$' 'FS-CLIENT1$'
samba-tool delegation add-principal 'FILESRV7$' 'FS-CLIENT1$'
samba-tool delegation add-principal 'NFS1$' 'FS-CLIENT1$'
samba-tool user sensitive backup on
samba-tool user sensitive svc-db on

#!/bin/bash
# certbot deploy hook: copy the new certificate to where nginx reads it, then reload nginx.
set -euo pipefail

: "${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}"
install -m 0644 "$RENEWED_LINEAGE/fullchain.pem" '@{tls_cert}'
install -m 0600 "$RENEWED_LINEAGE/privkey.pem" '@{tls_key}'
systemctl reload nginx

#!/bin/bash
# Ask Let's Encrypt for the site certificate once DNS points here; until then the timer retries
# and nginx keeps serving the self-signed one. Renewals are certbot's own timer.
set -euo pipefail

certbot certonly --non-interactive --agree-tos --keep-until-expiring \
    --email '@{email}' --webroot -w '@{acme_webroot}' \
    @{domain_args} \
    --deploy-hook '@{deploy_hook}'

#!/bin/sh
# post-test-invoice.sh TARGET TENANT: sales-billing's health check posts a test invoice to the
# tenant's finance-ar. Invoices from sales-billing 1.1 carry a legal entity, which finance-ar
# only accepts from 2.0 on: that combination fails here, as it would in production.
set -eu
target="$1"; tenant="$2"
billing=$(cat "$GANTRY_REPO/erp/$target/version")
ar=$(cat "$GANTRY_REPO/erp/$tenant-finance-ar/version" 2>/dev/null || echo none)
case "$billing" in
  1.0.*) ;;
  *)
    case "$ar" in
      1.*|none) echo "$tenant-finance-ar $ar rejected the test invoice: unknown field legal_entity (needs finance-ar 2.0.0)"; exit 1 ;;
    esac ;;
esac
echo "$target ($billing) posted a test invoice to $tenant-finance-ar ($ar)"

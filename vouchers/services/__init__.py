"""Writes of the vouchers app, one module per capability:

- `issue`: issuing (`voucher_issue`, used by promotions, benefits, bulk issue and rewards),
  cancelling (`voucher_cancel`) and bulk issue jobs;
- `redemption`: reserving, redeeming, releasing and reversing;
- `rewards`: buying a catalogue voucher with points (`reward_purchase`);
- `expiry`: the jobs (expiry, `voucher_expiring` notices, stale reservations);
- `benefits`: the issuer tier benefits call through `TESSERA_BENEFIT_VOUCHER_ISSUER`.
"""

from vouchers.services.issue import expires_at_for, voucher_cancel, voucher_issue

__all__ = ["expires_at_for", "voucher_cancel", "voucher_issue"]

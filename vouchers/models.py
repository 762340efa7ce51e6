"""The vouchers app: voucher definitions, vouchers and the reward catalogue (models to come)."""

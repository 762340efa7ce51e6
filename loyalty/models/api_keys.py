"""Keys of the REST API: one program each, stored as a hash, revoked rather than deleted."""

from django.db import models

from loyalty.models.programs import Program


class ApiKey(models.Model):
    """A program's key for the REST API. Only the SHA-256 of the secret is stored; `prefix`
    (its first 8 characters) identifies it in lists. Revoked keys stay for the audit trail."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["program", "name", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

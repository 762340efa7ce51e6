"""Response bodies of the member promotion endpoints (docs/api.md): decimals as strings."""

from rest_framework import serializers


class ProgressSerializer(serializers.Serializer):
    current = serializers.DecimalField(max_digits=18, decimal_places=3, coerce_to_string=True)
    goal = serializers.DecimalField(max_digits=14, decimal_places=2, coerce_to_string=True)
    metric = serializers.CharField(help_text="total_spend, transaction_count or quantity.")
    rewards_given = serializers.IntegerField(help_text="Rewards of the current period.")
    period_start = serializers.DateField(help_text="First day of the current progress period.")


class MemberPromotionSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    mechanics = serializers.CharField(help_text="standard or cumulative.")
    starts_at = serializers.DateTimeField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    enrollment_required = serializers.BooleanField()
    enrolled = serializers.BooleanField()
    progress = ProgressSerializer(allow_null=True, help_text="Cumulative promotions only.")


class MemberPromotionsSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="Membership number.")
    promotions = MemberPromotionSerializer(many=True)


class EnrollmentSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="Membership number.")
    promotion = serializers.CharField(help_text="The promotion's code.")
    enrolled = serializers.BooleanField()
    enrolled_at = serializers.DateTimeField()


class MemberBadgeSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    icon = serializers.CharField()
    awarded_at = serializers.DateTimeField()
    promotion = serializers.CharField(allow_null=True, help_text="The promotion that awarded it.")


class MemberBadgesSerializer(serializers.Serializer):
    member = serializers.CharField(help_text="Membership number.")
    badges = MemberBadgeSerializer(many=True)

"""The promotions app: promotions, their progress and badges (models to come)."""

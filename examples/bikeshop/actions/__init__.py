"""Custom actions of the Spoke & Chain example bot (rasa-sdk 3.x)."""

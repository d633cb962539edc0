"""churnlab: point-in-time churn and expansion models, reasons, and retention KPIs."""

__version__ = "0.1.0"

"""Stages that score rows and mark the ones to drop."""

"""Runnable pipelines, the stage contract, the runner, and the `curate` CLI."""

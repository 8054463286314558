"""Stages that create rows (TTS, ASR, generators, verifiers, pairs)."""

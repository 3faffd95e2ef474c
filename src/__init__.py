"""Experiment harness for the eight programs of "Learning PyTorch with Examples"."""

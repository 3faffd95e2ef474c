"""Where the repository is. Its own module so that what needs only this (the tracking store's
default place, hence every report command) does not import Hydra with src/config.py."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

"""Make the project's modules (utils, model, train, ...) importable however pytest is started:
`python -m pytest` puts the working directory on sys.path, plain `pytest` does not."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

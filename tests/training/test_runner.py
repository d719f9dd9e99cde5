"""The table of training kinds: every kind is declared in one place, and importing a trainer
module changes nothing."""

import json
import subprocess
import sys

from training.models import TrainingRun
from training.runner import TRAINERS, available_kinds, config_fields, get_trainer


def test_every_run_kind_has_a_declared_trainer_that_loads():
    """Each kind of TrainingRun is in the table, and its config class and training function load."""
    assert available_kinds() == [kind.value for kind in TrainingRun.Kind]
    for kind in available_kinds():
        spec = get_trainer(kind)
        assert spec.load_config_class().__name__.endswith("Config")
        assert callable(spec.load_train())
        assert config_fields(spec)


def test_importing_the_trainer_modules_registers_nothing():
    """Importing training.runner loads no trainer module, and importing the trainer modules
    afterwards leaves the table as it was (no registration at import time)."""
    code = """
import json, sys
import training.runner as runner
before = {kind: repr(spec) for kind, spec in runner.TRAINERS.items()}
loaded = sorted(m for m in ("training.reward", "training.dpo", "training.ppo.trainer", "torch") if m in sys.modules)
import training.reward, training.dpo, training.ppo.trainer
after = {kind: repr(spec) for kind, spec in runner.TRAINERS.items()}
print(json.dumps({"loaded": loaded, "same": before == after, "register": hasattr(runner, "register")}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"loaded": [], "same": True, "register": False}
    assert set(TRAINERS) == {"reward", "ppo", "dpo"}

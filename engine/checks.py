"""What `sage-engine check` verifies beyond the settings schema: what depends on this
machine and this workspace. Each failure raises ConfigError naming the setting, so the
dashboard's form can show it at its field. torch is imported for the device check only.
"""

from __future__ import annotations

from pathlib import Path

from engine.config import ConfigError, TrainConfig


class CheckContext:
    """What engine.train.prepare_data reads of a run, for a run that does not exist yet:
    the workspace, and a place for its warnings."""

    def __init__(self, workspace: Path):
        self.workspace = Path(workspace)
        self.warnings: list[str] = []

    def event(self, kind: str, message: str, data: dict | None = None) -> None:
        self.warnings.append(message)


def check_device(device: str, field_name: str = "device") -> None:
    if not device.startswith("cuda"):
        return
    import torch  # only here: the device check needs it

    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError(field_name, f"{device}: this machine has no CUDA device; use cpu or auto")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError(field_name, f"{device} does not exist: this machine has {count} CUDA "
                                      f"device(s), cuda:0 to cuda:{count - 1}")


def check_dataset(spec: str | None, field_name: str) -> None:
    from engine.arc import DatasetError, load_dataset

    if not spec:
        return
    try:
        load_dataset(spec)
    except DatasetError as exc:
        raise ConfigError(field_name, str(exc)) from None


def check_train(settings: dict, workspace: Path) -> None:
    from engine.arc import DatasetError
    from engine.errors import UserError
    from engine.train import prepare_data

    check_dataset(settings["eval_dataset"], "eval_dataset")
    try:
        # The very code a run starts with: datasets, task selection, the feature store
        # and whether it covers every example this run will read.
        prepare_data(TrainConfig.from_dict(settings), CheckContext(workspace))
    except DatasetError as exc:
        raise ConfigError("dataset", str(exc)) from None
    except UserError as exc:
        text = str(exc)
        raise ConfigError("features" if "feature" in text else "val_tasks" if "val_tasks" in text
                          else "dataset", text) from None


def check_extract(settings: dict) -> None:
    from engine.errors import UserError
    from engine.extract import ExtractConfig
    from engine.teachers import check_teacher

    check_dataset(settings["dataset"], "dataset")
    check_device(str(settings["teacher_options"].get("device", "cpu")), "teacher_options")
    try:
        config = ExtractConfig.from_dict(settings)
        check_teacher(config.teacher, **config.teacher_options)   # never loads the model
    except (UserError, ValueError) as exc:
        field_name = "teacher" if type(exc).__name__ == "TeacherError" else "config"
        raise ConfigError(field_name, str(exc)) from None


def check_eval(settings: dict, workspace: Path) -> None:
    from db.store import Store, WorkspaceError, db_path

    check_eval_tasks(settings)   # the dataset loads, and holds the tasks asked for
    if settings["checkpoint_id"] is not None and db_path(workspace).exists():
        try:
            with Store.open_readonly(workspace) as store:
                checkpoint = store.get_checkpoint(settings["checkpoint_id"])
        except WorkspaceError as exc:
            raise ConfigError("checkpoint_id", str(exc)) from None
        if not (workspace / checkpoint.path).exists():
            raise ConfigError("checkpoint_id", f"checkpoint file {checkpoint.path} is missing")


def check_eval_tasks(settings: dict) -> None:
    """The evaluation's dataset holds every named task, and its limits leave at least one."""
    from engine.arc import DatasetError, load_dataset, select_tasks

    try:
        dataset = load_dataset(settings["dataset"])
    except DatasetError as exc:
        raise ConfigError("dataset", str(exc)) from None
    try:
        tasks = select_tasks(dataset.tasks, settings.get("task_ids"), settings.get("max_tasks"),
                             settings.get("max_grid"))
    except DatasetError as exc:
        raise ConfigError("task_ids", str(exc)) from None
    if not tasks:
        limit = "max_grid" if settings.get("max_grid") else "task_ids"
        raise ConfigError(limit, f"no task of {dataset.name} is left with these limits: "
                                 f"widen max_grid or name other tasks")


def check_machine(kind: str, settings: dict, workspace: Path) -> None:
    """Raise ConfigError for the first thing that would stop a run of these (already
    schema-checked) settings on this machine, in this workspace."""
    check_device(str(settings.get("device") or "auto"))
    if kind == "train":
        check_train(settings, workspace)
    elif kind == "extract":
        check_extract(settings)
    else:
        check_eval(settings, workspace)

from db.workspace import ENV_VAR, resolve_workspace


def test_precedence_flag_env_config_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_workspace() == tmp_path / "home" / "sage-workspace"

    config = tmp_path / "cfg" / "sage-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'workspace = "{tmp_path / "from-config"}"\n')
    assert resolve_workspace() == tmp_path / "from-config"

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert resolve_workspace() == tmp_path / "from-env"
    assert resolve_workspace(str(tmp_path / "from-flag")) == tmp_path / "from-flag"


def test_broken_config_file_falls_back_to_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = tmp_path / "cfg" / "sage-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("workspace = [unclosed")
    assert resolve_workspace() == tmp_path / "home" / "sage-workspace"

from aegis_plugin.core.publish.provenance import BUILD_TYPE, predicate

FACTS = dict(builder_id="https://b.example/builder", target="models/fraud:fraud", version="1.0.0",
             source_url="https://example.invalid/repo", materials=[{"uri": "runtime.lock", "sha256": "ab" * 32}],
             invocation=["pants", "publish", "models/fraud:fraud"])


def test_predicate_records_source_materials_and_builder() -> None:
    p = predicate(git_sha="12" * 20, **FACTS)
    definition = p["buildDefinition"]
    assert definition["buildType"] == BUILD_TYPE and p["runDetails"]["builder"]["id"] == "https://b.example/builder"
    assert definition["externalParameters"] == {"target": "models/fraud:fraud", "version": "1.0.0",
                                                "invocation": ["pants", "publish", "models/fraud:fraud"]}
    assert definition["resolvedDependencies"] == [
        {"uri": f"git+https://example.invalid/repo@{'12' * 20}", "digest": {"gitCommit": "12" * 20}},
        {"uri": "runtime.lock", "digest": {"sha256": "ab" * 32}},
    ]
    assert definition["internalParameters"] == {"sourceTreeDirty": False}


def test_a_dirty_tree_is_said_so() -> None:
    p = predicate(git_sha="12" * 20 + "-dirty", **FACTS)
    assert p["buildDefinition"]["internalParameters"] == {"sourceTreeDirty": True}
    assert p["buildDefinition"]["resolvedDependencies"][0]["digest"] == {"gitCommit": "12" * 20}


def test_the_training_run_of_registry_files_is_a_resolved_dependency() -> None:
    run = {"run_id": "7211af93442a47abba7694e4e7920b6d", "source": "models:/fraud/3", "experiment": "fraud",
           "registered_model": "fraud", "model_version": "3", "git_commit": "cd" * 20, "tracking_uri": "",
           "params": {"lr": "0.05"}, "metrics": {"auc": 0.981},
           "files": [{"uri": "runs:/7211af93442a47abba7694e4e7920b6d/model/w", "sha256": "ef" * 32}]}
    p = predicate(git_sha="12" * 20, training_run=run, **FACTS)
    assert p["buildDefinition"]["resolvedDependencies"][-1] == {
        "uri": "runs:/7211af93442a47abba7694e4e7920b6d",
        "digest": {"gitCommit": "cd" * 20},
        "annotations": {"experiment": "fraud", "git_commit": "cd" * 20, "metrics": {"auc": 0.981},
                        "model_version": "3", "params": {"lr": "0.05"}, "registered_model": "fraud",
                        "source": "models:/fraud/3"},
    }

//! The container and Kubernetes files: no Docker engine runs here, so check
//! what can be checked without one: the YAML parses, the manifests agree
//! with the config the image runs, and that config passes `edge --check`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{repo_dir, run_args, venv::venv};

/// Parse YAML documents with PyYAML from the test venv; returns them as JSON.
fn yaml_as_json(path: &str) -> String {
    let py = venv().join("bin").join("python");
    let out = Command::new(py)
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))")
        .arg(repo_dir().join(path))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{path} is not valid YAML:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn site_toml() -> String {
    std::fs::read_to_string(repo_dir().join("docker/site.toml")).unwrap()
}

#[test]
fn manifests_parse_and_agree_with_the_image_config() {
    let deployment = yaml_as_json("docker/k8s/deployment.yaml");
    for want in [
        "\"kind\": \"Deployment\"",
        "\"readinessProbe\"",
        "\"livenessProbe\"",
        "\"preStop\"",
        "\"path\": \"/healthz\"",
        "\"terminationGracePeriodSeconds\": 35",
        "\"runAsNonRoot\": true",
    ] {
        assert!(
            deployment.contains(want),
            "deployment.yaml lacks {want}: {deployment}"
        );
    }
    let site = site_toml();
    assert!(
        site.contains("health = \"/healthz\""),
        "probes must hit server.health"
    );
    // preStop 5 s + graceful_timeout must fit in the grace period.
    assert!(site.contains("graceful_timeout = \"25s\""));
    assert!(yaml_as_json("docker/k8s/service.yaml").contains("\"kind\": \"Service\""));
    assert!(yaml_as_json("docker/k8s/hpa.yaml").contains("\"HorizontalPodAutoscaler\""));
    let compose = yaml_as_json("docker/compose.yaml");
    assert!(
        compose.contains("\"dockerfile\": \"docker/Dockerfile\""),
        "{compose}"
    );
    assert!(
        compose.contains("\"stop_grace_period\": \"30s\""),
        "{compose}"
    );
}

#[test]
fn dockerfile_runs_edge_as_a_non_root_pid_1_with_a_healthcheck() {
    let d = std::fs::read_to_string(repo_dir().join("docker/Dockerfile")).unwrap();
    for want in [
        "ENTRYPOINT [\"edge\"]",
        "CMD [\"--conf\", \"/app/docker/site.toml\"]",
        "STOPSIGNAL SIGTERM",
        "HEALTHCHECK",
        "/healthz",
        "USER edge",
        "COPY docker/site.toml /app/docker/site.toml",
        "COPY examples /app/examples",
    ] {
        assert!(d.contains(want), "Dockerfile lacks {want}");
    }
    // Two stages: the runtime image has no toolchain.
    assert_eq!(
        d.matches("\nFROM ").count() + usize::from(d.starts_with("FROM ")),
        2
    );
}

#[test]
fn the_image_config_passes_edge_check() {
    // Same file, with the image's venv path swapped for the test venv.
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    let site = site_toml().replace(
        "venv = \"/app/.venv\"",
        &format!("venv = {}", support::toml_path(&venv())),
    );
    std::fs::write(docker.join("site.toml"), site).unwrap();
    // The image keeps examples/ beside docker/.
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo_dir().join("examples"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let conf = docker.join("site.toml");
    let r = run_args(
        &["--check", "--conf", conf.to_str().unwrap()],
        None,
        Duration::from_secs(30),
    );
    assert_eq!(
        r.code(),
        Some(0),
        "edge --check failed:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("OK"));
}

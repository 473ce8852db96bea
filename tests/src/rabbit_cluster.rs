//! A RabbitMQ cluster of a test's own: nodes `tidings-{tag}-{i}@localhost` on free loopback
//! ports, each with its data in a folder of its own, sharing an Erlang cookie in that folder
//! (never the system broker's), clustered with `join_cluster`. Stopped and removed on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use parking_lot::Mutex;

/// One node: its name, AMQP port, and the server process while it runs.
struct Node {
    name: String,
    port: u16,
    child: Mutex<Option<Child>>,
}

/// A cluster of RabbitMQ nodes on this machine.
pub struct RabbitCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

const BIN: &str = "/usr/lib/rabbitmq/bin";

impl RabbitCluster {
    /// Starts `size` nodes and clusters them; waits until each runs.
    ///
    /// # Panics
    /// When RabbitMQ is not installed, or a node does not start or join in time.
    pub async fn start(size: usize) -> RabbitCluster {
        let tag = format!("{:08x}", fastrand::u32(..));
        let dir = std::env::temp_dir().join(format!("tidings-rabbit-cluster-{tag}"));
        std::fs::create_dir_all(&dir).expect("a folder");
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, format!("TIDINGS{tag}")).expect("a cookie");
        set_mode(&cookie, 0o400);
        std::fs::write(dir.join("plugins"), "[].\n").expect("plugins file");
        std::fs::write(dir.join("env"), "").expect("env file");
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("tidings-{tag}-{i}@localhost"),
                port: free_port(),
                child: Mutex::new(None),
            })
            .collect();
        let cluster = RabbitCluster { dir, nodes };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_up(i).await;
        }
        for i in 1..size {
            cluster.ctl(i, &["stop_app"]).await;
            let first = cluster.nodes[0].name.clone();
            cluster.ctl(i, &["join_cluster", &first]).await;
            cluster.ctl(i, &["start_app"]).await;
        }
        cluster
    }

    fn spawn(&self, i: usize) {
        let node = &self.nodes[i];
        let own = self.dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&own).expect("a node folder");
        let config = own.join("rabbitmq.conf");
        std::fs::write(
            &config,
            format!(
                "listeners.tcp.1 = 127.0.0.1:{}\nloopback_users = none\n",
                node.port
            ),
        )
        .expect("a config");
        let log = std::fs::File::create(own.join("server.log")).expect("a log");
        let child = Command::new(format!("{BIN}/rabbitmq-server"))
            .envs(self.env(i))
            .env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("plugins"))
            .env("RABBITMQ_MNESIA_BASE", own.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", own.join("log"))
            .env("RABBITMQ_PID_FILE", own.join("pid"))
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server must be installed");
        *node.child.lock() = Some(child);
    }

    /// What every RabbitMQ program run for node `i` needs: its name, this cluster's cookie,
    /// no system env file, distribution on loopback only, and a crash dump (an Erlang VM that
    /// fails to start writes one) in this cluster's folder rather than the test's working
    /// directory.
    fn env(&self, i: usize) -> Vec<(&'static str, String)> {
        vec![
            ("HOME", self.dir.display().to_string()),
            ("RABBITMQ_NODENAME", self.nodes[i].name.clone()),
            (
                "RABBITMQ_CONF_ENV_FILE",
                self.dir.join("env").display().to_string(),
            ),
            (
                "ERL_CRASH_DUMP",
                self.dir.join("erl_crash.dump").display().to_string(),
            ),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
            (
                "ERL_FLAGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
        ]
    }

    /// Waits until node `i` has started (`await_startup` fails at once while the node has
    /// not registered yet).
    ///
    /// # Panics
    /// When the node's server exits, or it has not started after 240 tries.
    async fn wait_up(&self, i: usize) {
        let log = self.dir.join(format!("node-{i}")).join("server.log");
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        for _ in 0..240 {
            let (ok, _) = self.try_ctl(i, &["await_startup", "--timeout", "60"]).await;
            if ok {
                return;
            }
            let exited = self.nodes[i]
                .child
                .lock()
                .as_mut()
                .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
            assert!(!exited, "node {i}'s server exited: {}", log());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("node {i} did not start: {}", log());
    }

    async fn try_ctl(&self, i: usize, args: &[&str]) -> (bool, String) {
        let output = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(format!("{BIN}/rabbitmqctl"))
                .envs(self.env(i))
                .arg("-n")
                .arg(&self.nodes[i].name)
                .args(args)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} on node {i} took over two minutes"))
        .expect("rabbitmqctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// `rabbitmqctl -n {node i} {args}`; its output.
    ///
    /// # Panics
    /// When it fails or takes over two minutes.
    pub async fn ctl(&self, i: usize, args: &[&str]) -> String {
        let (ok, text) = self.try_ctl(i, args).await;
        assert!(ok, "rabbitmqctl {args:?} on node {i}: {text}");
        text
    }

    /// The node's Erlang name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// `amqp://guest:guest@127.0.0.1:{port}/%2f` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.nodes[i].port)
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i` with SIGKILL (its Erlang VM, by the pid it wrote), as a machine that
    /// lost power would stop.
    pub fn kill(&self, i: usize) {
        let pid_file = self.dir.join(format!("node-{i}")).join("pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Some(mut child) = self.nodes[i].child.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            // Its data goes with the folder: nothing to stop gracefully for.
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

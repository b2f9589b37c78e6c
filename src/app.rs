//! Start-up and the server's life: open the store, check the secret key, create the demo
//! client on first start, load clients, serve until shutdown, then drain.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clients::SecretBox;
use crate::cluster::{Bus, Claims, Cluster, Event, Job, Lease};
use crate::config::{Settings, StoreSettings};
use crate::realtime::{Hub, Limits};
use crate::registry::Registry;
use crate::store::Store;
use crate::{demo, http};

/// Shared state of a running server; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

/// What `AppState` holds.
pub struct StateInner {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub keys: SecretBox,
    pub registry: Registry,
    pub hub: Hub,
    pub limits: Arc<Limits>,
    /// Cancelled when the server starts draining.
    pub shutdown: CancellationToken,
    /// Socket and answer tasks, awaited (up to the grace period) on shutdown.
    pub tasks: TaskTracker,
    /// Runs training for the schedule.
    pub trainer: crate::knowledge::run::Trainer,
    /// The HTTP client for language models (streams; only connecting is timed here).
    pub model_http: reqwest::Client,
    /// Model tokens used per client-day and session, for budget checks without a query.
    pub usage_meter: crate::assistant::meter::UsageMeter,
    /// Circuit breakers of the clients' models.
    pub model_breakers: crate::model::breaker::Breakers,
    /// Wakes the operator outbox worker when new work is queued.
    pub operator_wake: tokio::sync::Notify,
    /// What was learned from each client's Chatwoot (account, inbox checked).
    pub operator_discovery: crate::operator::relay::Discovery,
    /// The HTTP client for every Chatwoot (one connection pool).
    pub operator_http: reqwest::Client,
    /// Wrong admin passwords per account and address.
    pub login_throttle: crate::admin::LoginThrottle,
    /// The HTTP client for every task board.
    pub tasks_http: reqwest::Client,
    /// Wakes the task worker when a task is queued.
    pub tasks_wake: tokio::sync::Notify,
    /// Each client's product catalog (with its result cache).
    pub catalogs: crate::catalog::setup::Catalogs,
    /// The HTTP client for every catalog.
    pub catalog_http: reqwest::Client,
    /// Our share of product answers' latency.
    pub catalog_timings: crate::catalog::timing::Timings,
    /// Visitor messages whose answer is being produced right now (by seq), on any node.
    pub claims: Arc<Claims>,
    /// This node and its link to the others.
    pub cluster: Cluster,
    /// When this process started (ms since the epoch): a message stored before it cannot be
    /// in this process's hands, so a restarted node finishes it at once.
    pub started_ms: i64,
    /// What this node tells the others (a no-op on a node of its own).
    pub bus: Bus,
    /// Stops the link to the other nodes, after draining (answers still finishing publish).
    cluster_stop: CancellationToken,
    ready: AtomicBool,
}

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.inner
    }
}

impl AppState {
    /// Whether the server is serving and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.shutdown.is_cancelled()
    }

    /// Rebuilds this node's clients after a change made here, and tells the other nodes.
    pub async fn reload_everywhere(&self) -> Result<(), crate::store::StoreError> {
        self.registry.sync(self.store.as_ref()).await?;
        self.bus.publish(&Event::Reload);
        Ok(())
    }

    /// Runs a training run for client `uid` as `owner` and, when it succeeds, makes every node
    /// (this one first) answer from the new knowledge at once.
    pub async fn train(
        &self,
        uid: &str,
        owner: &str,
    ) -> Result<crate::knowledge::run::Outcome, crate::knowledge::run::TrainError> {
        use crate::knowledge::run::TrainError;
        let started = Instant::now();
        let result = self.trainer.train(uid, owner, |_| {}).await;
        match &result {
            // Runs that never started are not runs.
            Err(TrainError::NoClient(_) | TrainError::NotConfigured(_) | TrainError::Busy(_)) => {}
            other => crate::metrics::training(uid, other.is_ok(), started.elapsed()),
        }
        let outcome = result?;
        if let Err(e) = self.reload_everywhere().await {
            tracing::warn!(client = %uid, error = %e, "reloading clients after training failed; the next poll will");
        }
        Ok(outcome)
    }

    /// Erases the `matched` conversations (see [`crate::privacy::erase`]) and ends their live
    /// sockets on every node: a deleted visitor must not keep writing into a deleted session.
    pub async fn erase(
        &self,
        matched: &[crate::privacy::Matched],
    ) -> Result<crate::privacy::Erasure, crate::privacy::PrivacyError> {
        let erasure = crate::privacy::erase(self.store.as_ref(), matched).await?;
        let frame = crate::realtime::protocol::erased_frame();
        for session in &erasure.session_ids {
            self.hub.send(*session, &frame);
        }
        Ok(erasure)
    }

    /// The lease of periodic job `name` for this node (see [`Lease`]).
    pub fn lease(&self, name: &'static str, ttl: Duration) -> Lease {
        Lease::new(name, self.cluster.node(), ttl, self.settings.store.shared())
    }

    /// Wakes `job`'s worker, on this node and on the one that holds its lease.
    pub fn wake(&self, job: Job) {
        match job {
            Job::Operator => self.operator_wake.notify_one(),
            Job::Tasks => self.tasks_wake.notify_one(),
        }
        self.bus.publish(&Event::Wake(job));
    }
}

/// Creates the data directory, readable by this user only when it is new (it holds the
/// database with every conversation, the key file and the first admin's password); an
/// existing directory keeps the permissions its owner chose.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making data directory {} private", dir.display()))?;
    }
    Ok(())
}

/// Opens the store and checks (or, on first use, records) the secret key's fingerprint.
pub async fn open_store(settings: &StoreSettings) -> anyhow::Result<(Arc<dyn Store>, SecretBox)> {
    let postgres = settings.shared();
    if !postgres {
        create_private_dir(&settings.data_dir)?;
    }
    let keys = match (&settings.secret_key, postgres) {
        (Some(text), _) => SecretBox::from_text(text)?,
        (None, true) => anyhow::bail!(
            "AIA_SECRET_KEY is required with PostgreSQL (every node must share it); generate one with: openssl rand -hex 32"
        ),
        (None, false) => SecretBox::load_or_create(&settings.data_dir)?,
    };
    let store = crate::store::open(settings.database_url.as_deref(), &settings.data_dir)
        .await
        .context("opening the database")?;
    let expected = store.meta_init("secret_key_fingerprint", keys.fingerprint()).await?;
    keys.check(&expected)?;
    Ok((store, keys))
}

/// A built server, ready to run on a listener.
pub struct App {
    state: AppState,
    started: Instant,
}

impl App {
    /// Opens the store, prepares the demo client if asked, and loads every client.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let started = Instant::now();
        let cluster = match &settings.redis_url {
            Some(url) => {
                if !settings.store.shared() {
                    anyhow::bail!(
                        "--redis-url makes this node one of several, and they must share one database: give --database-url postgres://… too"
                    );
                }
                Cluster::connect(&url.0)?
            }
            None => Cluster::single(),
        };
        let (store, keys) = open_store(&settings.store).await?;
        if settings.demo {
            demo::ensure(store.as_ref(), &keys, settings.public_url.as_ref()).await?;
        }
        let password = settings.admin_password.as_ref().map(|p| p.0.as_str());
        match crate::admin::accounts::ensure_first(store.as_ref(), &settings.store.data_dir, password).await? {
            crate::admin::accounts::FirstAdmin::Exists => {}
            crate::admin::accounts::FirstAdmin::FromEnvironment => {
                tracing::info!(
                    username = crate::admin::accounts::FIRST_ADMIN,
                    "first admin created with AIA_ADMIN_PASSWORD"
                )
            }
            crate::admin::accounts::FirstAdmin::Generated(path) => tracing::info!(
                username = crate::admin::accounts::FIRST_ADMIN,
                password_file = %path.display(),
                "first admin created; its password is in the file (readable by this user only)"
            ),
        }
        let local = match &settings.embedding_model {
            Some(dir) => {
                let loaded = std::time::Instant::now();
                let model = crate::semantic::LocalModel::load(dir)
                    .map_err(|e| anyhow::anyhow!("--embedding-model {}: {e}", dir.display()))?;
                tracing::info!(model = %dir.display(), dim = model.model().dim(), ms = loaded.elapsed().as_millis() as u64, "sentence-embedding model loaded");
                Some(model)
            }
            None => None,
        };
        let registry = Registry::with_embedding(crate::registry::Embedding {
            local,
            http: crate::outbound::client(settings.store.upstream, std::time::Duration::from_secs(30)),
            keys: keys.clone(),
            store: store.clone(),
            lease_owner: settings.store.shared().then(|| cluster.node().to_string()),
        });
        registry.sync(store.as_ref()).await?;
        let trainer = crate::knowledge::run::Trainer::new(
            store.clone(),
            keys.clone(),
            settings.store.upstream,
            std::time::Duration::from_secs(30),
        );
        let cluster_stop = CancellationToken::new();
        let hub = Hub::default();
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let bus = {
            let hub = hub.clone();
            Bus::start(
                &cluster,
                move |event| match event {
                    // The hot path: straight to this node's sockets.
                    Event::Frame { session, lossy, frame } => hub.deliver_here(session, &frame, lossy),
                    other => {
                        let _ = events_tx.send(other);
                    }
                },
                cluster_stop.clone(),
            )
        };
        if cluster.clustered() {
            hub.attach(bus.clone());
        }
        let state = AppState {
            inner: Arc::new(StateInner {
                trainer,
                model_http: crate::outbound::streaming_client(
                    settings.store.upstream,
                    crate::model::client::Timeouts::default().connect,
                ),
                operator_http: crate::operator::chatwoot::Chatwoot::http_client(settings.store.upstream),
                tasks_http: crate::tasks::trello::Trello::http_client(settings.store.upstream),
                tasks_wake: tokio::sync::Notify::new(),
                catalogs: Default::default(),
                catalog_timings: Default::default(),
                catalog_http: crate::catalog::search::Catalog::http_client(settings.store.upstream),
                model_breakers: Default::default(),
                login_throttle: Default::default(),
                usage_meter: Default::default(),
                limits: Limits::new(settings.limits, &cluster),
                settings,
                store,
                keys,
                registry,
                hub,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                claims: Claims::new(&cluster, cluster_stop.clone()),
                started_ms: crate::ids::now_ms(),
                bus,
                cluster,
                cluster_stop,
                operator_wake: tokio::sync::Notify::new(),
                operator_discovery: Default::default(),
                ready: AtomicBool::new(false),
            }),
        };
        tokio::spawn(handle_events(state.clone(), events_rx));
        Ok(App { state, started })
    }

    /// The shared state (tests use it to reach the store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting, tells sockets to
    /// reconnect, lets writes finish within the grace period, and returns.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let background = spawn_background(&state);
        let schedule = spawn_schedule(&state);
        let retention = spawn_retention(&state);
        let operator = tokio::spawn(crate::operator::relay::run(state.clone()));
        let cable = tokio::spawn(crate::operator::cable::run(state.clone()));
        let tasks = tokio::spawn(crate::tasks::flow::run(state.clone()));
        let metrics = serve_metrics(&state)?;
        let router = http::router(state.clone());
        let token = state.shutdown.clone();
        let addr = listener.local_addr()?;
        state.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            %addr,
            node = state.cluster.node(),
            clustered = state.cluster.clustered(),
            ready_ms = self.started.elapsed().as_millis() as u64,
            "aia-chat is ready"
        );
        let drain = token.clone();
        let stop = async move {
            tokio::select! {
                _ = shutdown => {},
                _ = drain.cancelled() => {},
            }
            drain.cancel();
        };
        http::serve::serve(listener, router, state.settings.head_timeout, stop).await;
        tracing::info!("draining: sockets told to reconnect, finishing writes");
        state.tasks.close();
        if tokio::time::timeout(state.settings.shutdown_grace, state.tasks.wait()).await.is_err() {
            tracing::warn!("shutdown grace period ended with tasks still running");
        }
        background.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        schedule.abort();
        retention.abort();
        operator.abort();
        tasks.abort();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), cable).await;
        for name in crate::cluster::lease::JOBS {
            let _ = state.store.lease_release(name, state.cluster.node()).await;
        }
        state.cluster_stop.cancel();
        Ok(())
    }
}

/// Starts the metrics listener `--metrics-addr` names: the default address is best effort (a
/// second node on the host goes on without), an explicit one must bind.
fn serve_metrics(state: &AppState) -> anyhow::Result<Option<tokio::task::JoinHandle<std::io::Result<()>>>> {
    use crate::config::MetricsAddr;
    let listener = match state.settings.metrics_addr {
        MetricsAddr::Off => return Ok(None),
        MetricsAddr::Default => match crate::metrics::bind(MetricsAddr::DEFAULT) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(
                    addr = %MetricsAddr::DEFAULT,
                    error = %e,
                    "metrics are not served: their default address is taken (set --metrics-addr, or off)"
                );
                return Ok(None);
            }
        },
        MetricsAddr::At(addr) => {
            crate::metrics::bind(addr).map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))?
        }
    };
    crate::metrics::handle();
    Ok(Some(tokio::spawn(crate::metrics::serve(listener, state.clone()))))
}

fn spawn_background(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            match state.registry.sync(state.store.as_ref()).await {
                Ok(changed) if !changed.is_empty() => {
                    tracing::info!(clients = ?changed, "client settings or knowledge reloaded")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checking clients for changes failed"),
            }
            n += 1;
            if n.is_multiple_of(120) {
                state.limits.tidy();
            }
        }
    })
}

/// Deletes conversations idle longer than their client's `retention_days`, in batches, through
/// the same erasure as a visitor's request (every visitor table, live sockets ended), and
/// webhook delivery ids older than a day, at start and then every `retention_interval`.
fn spawn_retention(state: &AppState) -> tokio::task::JoinHandle<()> {
    const BATCH: u32 = 500;
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.retention_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease = state.lease(crate::cluster::lease::RETENTION, state.settings.retention_interval * 3);
        loop {
            tick.tick().await;
            if !lease.hold(state.store.as_ref()).await {
                continue;
            }
            if let Err(e) = state.store.webhook_deliveries_forget(crate::ids::now_ms()).await {
                tracing::warn!(error = %e, "forgetting old webhook delivery ids failed");
            }
            for client in state.registry.all() {
                let days = client.settings.get("retention_days").parse::<i64>().unwrap_or(0);
                if days <= 0 {
                    continue;
                }
                let before = crate::ids::now_ms() - days * 86_400_000;
                let (mut deleted, mut upstream) = (0, 0);
                loop {
                    let erased = match state.store.sessions_idle(client.row.id, before, BATCH).await {
                        Ok(idle) => {
                            let matched: Vec<_> = idle
                                .into_iter()
                                .map(|session| crate::privacy::Matched { client: client.row.clone(), session })
                                .collect();
                            state.erase(&matched).await.map(|e| (matched.len(), e))
                        }
                        Err(e) => Err(e.into()),
                    };
                    match erased {
                        Ok((n, erasure)) => {
                            deleted += n;
                            upstream +=
                                erasure.upstream.chatwoot_conversations.len() + erasure.upstream.trello_cards.len();
                            if n < BATCH as usize {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(client = %client.row.uid, error = %e, "deleting old conversations failed");
                            break;
                        }
                    }
                }
                if deleted > 0 {
                    tracing::info!(
                        client = %client.row.uid,
                        deleted,
                        days,
                        upstream,
                        "conversations past their retention deleted (upstream: Chatwoot conversations and Trello cards, kept there)"
                    );
                }
            }
        }
    })
}

/// Starts the training runs that clients' `train_interval` says are due. A client with a
/// source and an interval trains once right away if it never trained; the lease in the
/// database keeps this from overlapping with CLI runs or other nodes.
fn spawn_schedule(state: &AppState) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    let node = format!("server-{}", state.cluster.node());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.settings.schedule_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ttl = (state.settings.schedule_interval * 3).max(Duration::from_secs(5));
        let mut lease = state.lease(crate::cluster::lease::SCHEDULE, ttl);
        loop {
            tick.tick().await;
            if !lease.hold(state.store.as_ref()).await {
                continue;
            }
            for client in state.registry.all() {
                let Ok(interval) = crate::config::parse_duration(client.settings.get("train_interval")) else {
                    continue;
                };
                if client.settings.get("graphql_url").is_empty() {
                    continue;
                }
                let now = crate::ids::now_ms();
                let due = match state.store.training_status(client.row.id).await {
                    Ok(None) => true,
                    Ok(Some(t)) => {
                        let last = [Some(t.started_at), t.last_success_at, t.last_error_at].into_iter().flatten().max();
                        !t.running(now) && last.unwrap_or(0) + interval.as_millis() as i64 <= now
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading training status failed");
                        false
                    }
                };
                if due {
                    let (state, uid, owner) = (state.clone(), client.row.uid.clone(), node.clone());
                    state.clone().tasks.spawn(async move {
                        match state.train(&uid, &owner).await {
                            Ok(o) => tracing::info!(client = %uid, entries = o.entries, pages = o.pages, changed = o.written.changed, "scheduled training finished"),
                            Err(crate::knowledge::run::TrainError::Busy(_)) => {}
                            Err(e) => tracing::warn!(client = %uid, error = %e, "scheduled training failed; the previous knowledge keeps serving"),
                        }
                    });
                }
            }
        }
    })
}

/// Acts on what the other nodes said (frames went straight to the hub).
async fn handle_events(state: AppState, mut events: tokio::sync::mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        match event {
            // Delivered by the bus's callback, never queued here.
            Event::Frame { .. } => {}
            Event::Reload => match state.registry.sync(state.store.as_ref()).await {
                Ok(changed) if !changed.is_empty() => {
                    tracing::info!(clients = ?changed, "client settings or knowledge reloaded (another node changed them)")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reloading clients failed"),
            },
            Event::Wake(Job::Operator) => state.operator_wake.notify_one(),
            Event::Wake(Job::Tasks) => state.tasks_wake.notify_one(),
            Event::Resync => {
                // Frames sent while the link was down never came: every socket resumes, and
                // its welcome carries what the store has. The widget adds its own jitter.
                let frame =
                    crate::realtime::protocol::ServerFrame::Reconnect { reason: "resync", after_ms: 500 }.encode();
                state.hub.send_all(&frame);
            }
        }
    }
}

/// Binds the listener with a backlog deep enough for a burst of new connections.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(8192)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn a_new_data_directory_is_private_and_an_existing_one_is_left_as_it_is() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b/aia-data");
        super::create_private_dir(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o750)).unwrap();
        super::create_private_dir(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o750, "the owner's choice");
    }
}

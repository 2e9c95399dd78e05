//! The command line: every command and its arguments, parsed by clap into
//! the types below and handed to `commands`, which does the work.
//!
//! Commands come in two kinds. **Server commands** run on the registry's own
//! data (the database and blob storage named by the configuration, whose
//! flags every one of them takes): `serve`, `gc`, `admin`, `events`,
//! `config`.
//! **Client commands** (`berth login`, `berth namespace list`, …) talk to a
//! running registry over HTTP, as any client would; they take a registry
//! (`--registry HOST`, else the default) and the login stored by `berth
//! login`, never the configuration, and go below the server commands here,
//! each with its module in `commands/`.

use clap::{Args, Parser, Subcommand};

use crate::client::output::OutputFormat;
use crate::config::ConfigArgs;

/// Berth: an OCI container registry.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    // Server commands: they read the configuration and open the registry's
    // data themselves.
    /// Run the registry server.
    Serve(ConfigArgs),
    /// Run one garbage-collection pass and print what it removed. Safe while
    /// servers run on the same data: it takes the same job lease they do.
    Gc(GcArgs),
    /// Administer users, namespaces, members, tokens and signing keys on the
    /// database directly.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Read the event stream (every change, in order) on the database
    /// directly; servers may be running.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Manage the Vulnerability Advisor's advisories on the database
    /// directly; servers may be running.
    Advisories {
        #[command(subcommand)]
        command: AdvisoriesCommand,
    },
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    // Client commands: they talk HTTP to a registry.
    /// Log in to a registry and keep a refresh token (never the password).
    Login(LoginArgs),
    /// Forget the login to a registry (and the credentials --docker wrote).
    Logout {
        /// The registry (default: the default registry).
        host: Option<String>,
    },
    /// Change your password on a registry (the current one is asked for),
    /// then log in again with the new one: the change ends every stored
    /// login, `docker login` included.
    Passwd(PasswdArgs),
    /// Show the default registry, or set it.
    Registry {
        #[command(subcommand)]
        command: Option<RegistryCommand>,
    },
    /// Show the registries logged in to, and whether each login still works.
    Info(ClientArgs),
    /// Manage namespaces on a registry.
    Namespace {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientNamespaceCommand,
    },
    /// List, inspect, tag, untag and remove images on a registry.
    Image {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientImageCommand,
    },
    /// Show an image's manifest as pushed.
    Manifest {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientManifestCommand,
    },
    /// Manage the members of a namespace.
    Member {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientMemberCommand,
    },
    /// Manage access (robot) tokens for pipelines and clusters.
    Token {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientTokenCommand,
    },
    /// Manage users (administrators only).
    User {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientUserCommand,
    },
    /// The Vulnerability Advisor: an image's vulnerabilities, and the
    /// namespaces' pull policies (`berth va policy …`).
    #[command(args_conflicts_with_subcommands = true)]
    Va(VaArgs),
    /// Manage vulnerability exemptions: findings that do not count.
    Exemption {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientExemptionCommand,
    },
    /// Immutable tags: rules under which a tag, once pushed, is never moved
    /// to another image nor deleted.
    Immutable {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientImmutableCommand,
    },
    /// Retention policies: per namespace, which images stay and which go
    /// to the trash.
    Retention {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientRetentionCommand,
    },
    /// Webhooks: a namespace's events, or every event of the registry
    /// (`'*'`, administrators), POSTed to a URL as signed CloudEvents.
    Webhook {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientWebhookCommand,
    },
    /// Replication rules: copy images to another registry (`--target`) or
    /// from one (`--source`), on push and on a schedule (administrators).
    Replication {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientReplicationCommand,
    },
    /// The audit trail: who did what, on which resource, when (administrators).
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        /// Only records of the last DURATION (`1h`, `7d`).
        #[arg(long, value_name = "DURATION")]
        since: Option<humantime::Duration>,
        /// Only those of this user, robot or job.
        #[arg(long, value_name = "NAME")]
        actor: Option<String>,
        /// Only those in this namespace.
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// Only this action (an event kind: `tag.deleted`).
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        /// At most this many records, newest first (1 to 1000, 100 by
        /// default; with --export, any number, all by default).
        #[arg(long)]
        limit: Option<u64>,
        /// Write every matching record as JSON lines (one object per line,
        /// the objects of `-o json`, newest first), paging through the
        /// whole trail: an export for other tools (`> audit.jsonl`).
        #[arg(long)]
        export: bool,
    },
    /// The trash: deleted images, restorable with `berth image restore`
    /// until `trash_retention` has passed.
    Trash {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientTrashCommand,
    },
    /// Quotas: what each namespace stores and serves this month against its
    /// limits (`berth quota set`, administrators).
    #[command(args_conflicts_with_subcommands = true)]
    Quota(QuotaArgs),
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct VaArgs {
    /// The image: `NS/REPO:TAG`, `NS/REPO@DIGEST` or `NS/REPO` (its `latest`).
    pub image: Option<String>,
    /// Show findings without a published fix too.
    #[arg(long)]
    pub all: bool,
    /// The registry (host, host:port or URL; default: `berth registry`).
    #[arg(long, global = true, value_name = "HOST")]
    pub registry: Option<String>,
    /// `table` for people, `json` (the API's report), `sarif` (SARIF 2.1.0
    /// for code-scanning tools) or `cyclonedx` (the image's SBOM).
    // Its own id: `berth va policy` takes the client's global `--output`
    // (`OutputFormat`), whose value clap also hands up to this command's
    // matches under the id `output`.
    #[arg(
        id = "va_output",
        short = 'o',
        long = "output",
        value_enum,
        default_value = "table"
    )]
    pub output: VaOutput,
    #[command(subcommand)]
    pub command: Option<VaCommand>,
}

/// How `berth va` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VaOutput {
    Table,
    Json,
    Sarif,
    Cyclonedx,
}

#[derive(Subcommand, Debug)]
pub enum VaCommand {
    /// The namespaces' vulnerability pull policies.
    Policy {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientPolicyCommand,
    },
    /// The images with issues (findings with a fix, not exempted) and
    /// their findings by severity, per namespace you may see.
    Summary {
        /// Only this namespace.
        namespace: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientPolicyCommand {
    /// Set a namespace's pull policy.
    Set {
        namespace: String,
        /// off, warn (pulls succeed with a warning) or block (pulls are refused).
        #[arg(long, value_parser = ["off", "warn", "block"])]
        mode: String,
        /// The lowest severity that counts.
        #[arg(long, default_value = "critical", value_parser = ["critical", "high", "medium", "low", "any"])]
        severity: String,
        /// Refuse (or warn about) images not indexed yet too.
        #[arg(long)]
        block_unscanned: bool,
        /// Attach each indexed image's SBOM (CycloneDX) to it as an OCI
        /// referrer, listed by `oras discover`.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        sbom: String,
    },
    /// List the pull policies of the namespaces you may see.
    #[command(alias = "ls")]
    List,
}

#[derive(Subcommand, Debug)]
pub enum ClientExemptionCommand {
    /// Exempt an advisory (by id or alias) in a scope.
    Add {
        /// `*` (the whole registry, administrators), NS, NS/REPO, NS/REPO:TAG or NS/REPO@DIGEST.
        #[arg(long)]
        scope: String,
        /// The advisory id or alias (CVE-2024-1234).
        #[arg(long)]
        issue: String,
        /// Why it does not apply.
        #[arg(long, default_value = "")]
        reason: String,
        /// How long it lasts (30d, 12w); never by default.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List exemptions (registry-wide ones and those of namespaces you may see).
    #[command(alias = "ls")]
    List {
        /// Only those of exactly this scope.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Remove an exemption.
    #[command(alias = "remove")]
    Rm {
        #[arg(long)]
        scope: String,
        #[arg(long)]
        issue: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientTrashCommand {
    /// List deleted images waiting in the trash, oldest deletion first.
    #[command(alias = "ls")]
    List {
        /// Only this namespace's.
        #[arg(long, value_name = "NS")]
        restrict: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct QuotaArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only this namespace (default: every namespace you may see).
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Option<QuotaCommand>,
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Set a namespace's limits (administrators).
    Set {
        namespace: String,
        /// Bytes the namespace may hold (`10GB`, `500MiB`), `default` for
        /// the registry-wide default, or `unlimited` (exempt from it).
        #[arg(long, value_name = "SIZE", value_parser = parse_limit)]
        storage: Option<LimitArg>,
        /// Bytes of blobs it may serve per calendar month (UTC),
        /// `default` or `unlimited`.
        #[arg(long, value_name = "SIZE", value_parser = parse_limit)]
        traffic: Option<LimitArg>,
    },
    /// Recount every namespace's storage usage from the data and report
    /// any drift from what was recorded, correcting it (administrators).
    Recompute,
    /// A namespace's usage per day (UTC): storage, pulls and bytes pulled,
    /// oldest first.
    History {
        namespace: String,
        /// How many days, today included (1 to 400).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=400))]
        days: u32,
    },
}

/// A limit on the command line: a size, the registry-wide default, or no
/// limit at all (a namespace exempt from the default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitArg {
    Default,
    Unlimited,
    Bytes(u64),
}

/// Parses `default`, `unlimited` or a size with the one size parser of
/// the configuration (`10GB`, `500MiB`, `1048576`).
fn parse_limit(text: &str) -> Result<LimitArg, String> {
    use crate::config::values::{ByteSize, Setting};
    match text {
        "default" => Ok(LimitArg::Default),
        "unlimited" => Ok(LimitArg::Unlimited),
        _ => ByteSize::parse_text(text).map(|size| LimitArg::Bytes(size.0)),
    }
}

#[derive(Subcommand, Debug)]
pub enum ClientImmutableCommand {
    /// Make the tags matching a pattern immutable in a namespace or one
    /// repository.
    Add {
        /// NS (every repository of the namespace) or NS/REPO.
        scope: String,
        /// The tags: `*` stands for any run of characters, `?` for one
        /// (`v*`, `release-?`); the whole tag must match.
        #[arg(long, value_name = "PATTERN")]
        tags: String,
    },
    /// List the rules of the namespaces you may see.
    #[command(alias = "ls")]
    List {
        /// Only those of this namespace.
        namespace: Option<String>,
    },
    /// Remove a rule.
    #[command(alias = "remove")]
    Rm {
        /// NS or NS/REPO, as the rule was added.
        scope: String,
        #[arg(long, value_name = "PATTERN")]
        tags: String,
    },
}

/// What a retention policy does with untagged images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UntaggedArg {
    Keep,
    Delete,
}

#[derive(Subcommand, Debug)]
pub enum ClientRetentionCommand {
    /// Set a namespace's retention policy, replacing any: in each of its
    /// repositories the newest N tagged images stay, the older ones go to
    /// the trash.
    Set {
        /// The namespace.
        namespace: String,
        /// How many tagged images of each repository stay (newest by the
        /// image's `created`, else its push time; an image with several
        /// tags counts once).
        #[arg(long, value_name = "N")]
        keep: u32,
        /// What becomes of images no tag points at.
        #[arg(long, value_enum, default_value = "keep")]
        untagged: UntaggedArg,
        /// Never delete an image created or pushed less than this long ago
        /// (`7d`, `12h`).
        #[arg(long, value_name = "DURATION")]
        min_age: Option<humantime::Duration>,
        /// Images with a tag this regular expression matches always stay
        /// (matched anywhere in the tag; anchor it with ^ and $).
        #[arg(long, value_name = "REGEX")]
        keep_tags: Option<String>,
    },
    /// List the policies of the namespaces you may see.
    #[command(alias = "ls")]
    List,
    /// Run a namespace's policy now and list exactly what goes.
    Run {
        /// The namespace.
        namespace: String,
        /// Only list what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a namespace's policy.
    #[command(alias = "remove")]
    Rm {
        /// The namespace.
        namespace: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientReplicationCommand {
    /// Add a rule: push to `--target`, or pull from `--source`.
    #[command(group(clap::ArgGroup::new("remote").required(true).args(["target", "source"])))]
    Add {
        /// The rule's name.
        name: String,
        /// Copy Berth's images to this registry (its base URL).
        #[arg(long, value_name = "URL")]
        target: Option<String>,
        /// Copy this registry's images into Berth.
        #[arg(long, value_name = "URL")]
        source: Option<String>,
        /// A file holding `user:password` or a token for the other
        /// registry (never given on the command line). Stored encrypted,
        /// never shown.
        #[arg(long, value_name = "FILE")]
        creds_file: Option<std::path::PathBuf>,
        /// Repositories: a glob, `*` within a path component, `**` across
        /// (`team/**`).
        #[arg(long, value_name = "PATTERN")]
        repos: String,
        /// Tags: a glob (`v*`); every tag when absent.
        #[arg(long, value_name = "PATTERN")]
        tags: Option<String>,
        /// Replicate each push and tag deletion at once (push rules).
        #[arg(long)]
        on_push: bool,
        /// Also run every DURATION (`1h`, `30m`).
        #[arg(long, value_name = "DURATION")]
        every: Option<humantime::Duration>,
    },
    /// List the rules with their last run.
    #[command(alias = "ls")]
    List,
    /// Run a rule now.
    Run {
        name: String,
        /// Wait for the run to finish, and fail when it fails.
        #[arg(long)]
        wait: bool,
    },
    /// A rule, its last runs and their errors.
    Status { name: String },
    /// Remove a rule and its history.
    #[command(alias = "remove")]
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ClientWebhookCommand {
    /// Send the events of a namespace (or, with '*', of the whole
    /// registry) to a URL.
    Add {
        /// A namespace, or '*' for every event (administrators only).
        scope: String,
        /// Where deliveries are POSTed (http or https).
        url: String,
        /// Event types, comma-separated: `push` (a tag pointed at an
        /// image), `delete` (a tag, image or repository deleted), or event
        /// kinds of `berth events tail` (`manifest.stored`).
        #[arg(long, value_delimiter = ',', required = true, value_name = "TYPES")]
        events: Vec<String>,
        /// Signs each delivery: header `X-Berth-Signature-256: sha256=<hex
        /// HMAC-SHA256 of the body>`. Stored encrypted, never shown.
        #[arg(long, value_name = "SECRET")]
        secret: Option<String>,
        /// What deliveries look like: a CloudEvents 1.0 document, or CNCF
        /// Distribution's notification envelope for consumers written
        /// against Distribution (pushes and deletions only).
        #[arg(long, value_enum, default_value_t = WebhookEnvelope::Cloudevents)]
        envelope: WebhookEnvelope,
    },
    /// List the webhooks you may manage.
    #[command(alias = "ls")]
    List {
        /// Only those of this namespace ('*': the registry-wide ones).
        scope: Option<String>,
    },
    /// Remove a webhook; its pending deliveries are dropped.
    #[command(alias = "remove")]
    Rm {
        /// The webhook's id (`berth webhook list`).
        id: i64,
    },
    /// A webhook's latest deliveries, newest first: state, attempts, last
    /// answer.
    Deliveries {
        /// The webhook's id.
        id: i64,
    },
}

/// `berth webhook add --envelope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookEnvelope {
    /// CloudEvents 1.0 (structured JSON).
    Cloudevents,
    /// `{"events": [...]}`, as Distribution's notifications.
    Distribution,
}

impl WebhookEnvelope {
    /// The API's name of it.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEnvelope::Cloudevents => "cloudevents",
            WebhookEnvelope::Distribution => "distribution",
        }
    }
}

/// What every client command that talks to a registry takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The registry (host, host:port or URL; default: `berth registry`).
    #[arg(long, global = true, value_name = "HOST")]
    pub registry: Option<String>,
    /// Output format: `table` for people, `json` for programs (docs/cli.md).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t
    )]
    pub output: OutputFormat,
    /// Print only names (lists) or nothing (changes), for pipes.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print each item of a list through this template, one line each:
    /// `{{ repository }}:{{ tags | join(",") }}` (Jinja syntax; the fields
    /// are those of `-o json`, docs/cli.md).
    #[arg(long, global = true, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The registry: host, host:port or URL. Plain HTTP only with http://
    /// or for a loopback host. Default: the default registry.
    pub host: Option<String>,
    /// The user name (asked for on a terminal if missing).
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Read the password from standard input (one line).
    #[arg(long)]
    pub password_stdin: bool,
    /// Also write docker's and podman's credentials, so that `docker push`
    /// and `podman push` work without a login of their own.
    #[arg(long)]
    pub docker: bool,
}

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Make HOST the registry commands use when no --registry is given.
    Set { host: String },
}

#[derive(Subcommand, Debug)]
pub enum ClientNamespaceCommand {
    /// Create a namespace (private unless --public); you become its owner
    /// (administrators add themselves with `berth member add`).
    Add {
        name: String,
        #[arg(long)]
        public: bool,
    },
    /// List the namespaces you can see (all of them, a page at a time).
    #[command(alias = "ls")]
    List {
        /// At most this many namespaces (the first by name).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Remove a namespace; one that holds repositories only with --force.
    #[command(alias = "remove")]
    Rm {
        name: String,
        /// Remove its repositories too, with every image in them.
        #[arg(long)]
        force: bool,
    },
}

/// What `berth image list` and `berth image digests` show.
#[derive(Args, Debug, Clone)]
pub struct ImageListArgs {
    /// Only this namespace (NS) or repository (NS/REPO).
    #[arg(long, value_name = "NS[/REPO]")]
    pub restrict: Option<String>,
    /// Also images no tag points at (an index's children, old pushes).
    #[arg(long)]
    pub include_untagged: bool,
    /// Show whole digests.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show each image's type (image, index, artifact).
    #[arg(long)]
    pub show_type: bool,
}

#[derive(Subcommand, Debug)]
pub enum ClientImageCommand {
    /// List images, one row per tag, newest first.
    #[command(alias = "ls")]
    List(ImageListArgs),
    /// List image digests, one row per image, with their tags.
    Digests(ImageListArgs),
    /// Show everything about images (JSON): configuration, layers,
    /// platforms, referrers.
    Inspect {
        /// [HOST/]NS/REPO[:TAG|@DIGEST]
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Point TARGET (a tag, in any namespace) at SOURCE, server-side.
    Tag {
        #[arg(value_name = "SOURCE")]
        source: String,
        #[arg(value_name = "TARGET")]
        target: String,
    },
    /// Remove a tag; the image stays under its digest and other tags.
    Untag {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// Remove images (by tag or digest) with every tag pointing at them;
    /// they wait in the trash (`berth trash list`) until `trash_retention`.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Bring a deleted image back from the trash, with its referrers and
    /// the tags it had that are still free (the others are reported).
    Restore {
        /// [HOST/]NS/REPO@DIGEST
        #[arg(value_name = "IMAGE")]
        image: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientManifestCommand {
    /// Print the manifest of IMAGE as pushed (JSON).
    Inspect {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClientMemberCommand {
    /// Add a member to a namespace, or change their role.
    Add {
        namespace: String,
        user: String,
        #[arg(value_parser = ["reader", "writer", "maintainer", "owner"])]
        role: String,
    },
    /// List a namespace's members.
    #[command(alias = "ls")]
    List { namespace: String },
    /// Remove a member from a namespace.
    #[command(alias = "remove")]
    Rm { namespace: String, user: String },
}

#[derive(Subcommand, Debug)]
pub enum ClientTokenCommand {
    /// Create an access token; its secret is printed once.
    Add(ClientTokenAdd),
    /// List your access tokens (all of them, for administrators), or with
    /// --namespace every token that reaches a namespace you own, whoever
    /// created it.
    #[command(alias = "ls")]
    List {
        /// The namespace whose tokens to list (its owners and administrators).
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// Revoke an access token; it stops working at once.
    #[command(alias = "remove")]
    Rm { name: String },
}

#[derive(Args, Debug)]
pub struct ClientTokenAdd {
    /// The token's name: the user name for `docker login -u NAME`.
    pub name: String,
    /// NAMESPACE[/REPO]:pull[,push[,delete]]; repeat for several.
    #[arg(long = "scope", required = true, value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. 90m, 12h, 30d, 4w, or never.
    #[arg(long, default_value = "never")]
    pub expires: String,
    /// Print a kubernetes.io/dockerconfigjson Secret of this name, for a
    /// cluster's imagePullSecrets, instead of the bare secret.
    #[arg(long, value_name = "SECRET-NAME")]
    pub k8s_secret: Option<String>,
    /// The Kubernetes namespace of the Secret.
    #[arg(long, value_name = "NS", requires = "k8s_secret")]
    pub k8s_namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// The registry (default: the default registry).
    pub host: Option<String>,
    /// Read the current password and then the new one from standard input,
    /// one line each, instead of prompting for them.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum ClientUserCommand {
    /// Create a user and their personal namespace. Without --password-stdin
    /// a password is generated and printed once.
    Add {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    #[command(alias = "ls")]
    List,
    /// Remove a user with their memberships and refresh tokens; their
    /// personal namespace stays.
    #[command(alias = "remove")]
    Rm { name: String },
    /// Disable a user: they cannot log in, and every credential of theirs
    /// (registry tokens, refresh tokens, the access tokens they created)
    /// stops working at once.
    Disable { name: String },
    /// Enable a disabled user again (their revoked refresh tokens stay revoked).
    Enable { name: String },
    /// Grant (`true`) or withdraw (`false`) administration of the registry.
    SetAdmin {
        name: String,
        #[arg(action = clap::ArgAction::Set, value_parser = clap::value_parser!(bool))]
        admin: bool,
    },
    /// Set a user's password (generated and printed once without
    /// --password-stdin); their stored logins (refresh tokens) are revoked.
    SetPassword {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Report what would be removed, and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also sweep the blob store for objects the metadata does not know.
    #[arg(long)]
    pub sweep_orphans: bool,
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Print events: the last few, or from a position or a time on; with
    /// --follow, keep printing them as they happen.
    Tail(TailArgs),
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Keep printing new events until interrupted.
    #[arg(long, short)]
    pub follow: bool,
    /// Where to start: a position (events after it; 0 for all that are
    /// kept) or how long ago (e.g. 90m, 1h, 2d). Default: the last 20
    /// events, or where --consumer last stopped.
    #[arg(long)]
    pub since: Option<String>,
    /// Read as the durable consumer NAME: start where it stopped (a new one
    /// starts at --since, default the oldest event kept) and record what was
    /// printed.
    #[arg(long)]
    pub consumer: Option<String>,
    /// text for people, json for scripts (one object per line).
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: EventOutput,
}

/// How `berth events tail` prints events.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EventOutput {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum AdvisoriesCommand {
    /// Import OSV advisories: a directory of OSV JSON/YAML records, one
    /// record, or an ecosystem's all.zip (a path or an http(s) URL).
    /// Incremental: records not newer than the stored ones are left alone,
    /// withdrawn ones are removed.
    Import(ImportArgs),
    /// Show each configured advisory source (`[scanner] advisory_urls`)
    /// with the state of its scheduled sync: last attempt, last success,
    /// records changed, last error.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output format: `table` for people, `json` for programs.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The records: a directory, a file, an all.zip, or an http(s) URL of one.
    #[arg(value_name = "PATH|URL")]
    pub source: String,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration (file, environment and flags) and print
    /// every key with its value and where the value came from.
    Check(ConfigArgs),
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage namespaces.
    Namespace {
        #[command(subcommand)]
        command: NamespaceCommand,
    },
    /// Manage namespace members.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Manage access (robot) tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the keys that sign registry tokens, shared by every node.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user and their personal namespace. Without --password-stdin a
    /// password is generated and printed once.
    Create {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Make the user a system administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set a user's password (generated and printed once without
    /// --password-stdin); their stored logins (refresh tokens) are revoked.
    SetPassword {
        name: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Disable a user: they cannot log in, and every credential of theirs
    /// (registry tokens, refresh tokens, the access tokens they created)
    /// stops working at once.
    Disable {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Enable a disabled user again (their revoked refresh tokens stay revoked).
    Enable {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete a user with their memberships and refresh tokens; their
    /// personal namespace stays.
    Delete {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Grant (`true`) or withdraw (`false`) administration of the registry.
    SetAdmin {
        name: String,
        #[arg(action = clap::ArgAction::Set, value_parser = clap::value_parser!(bool))]
        admin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// Create a namespace (private unless --public).
    Create {
        name: String,
        #[arg(long, conflicts_with = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
        /// Make this user the namespace's owner.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make a namespace public or private.
    SetVisibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List namespaces.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a member (or change their role): reader, writer, maintainer or owner.
    Add {
        namespace: String,
        user: String,
        #[arg(value_parser = ["reader", "writer", "maintainer", "owner"])]
        role: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove a member.
    Remove {
        namespace: String,
        user: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Args, Debug)]
pub struct TokenCreate {
    /// The token's name: the user name for `docker login -u NAME`.
    #[arg(long)]
    pub name: String,
    /// NAMESPACE[/REPO]:pull[,push[,delete]]; repeat for several.
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Lifetime, e.g. 90m, 12h, 30d, 4w, or never.
    #[arg(long, default_value = "never")]
    pub expires: String,
    /// Print a kubernetes.io/dockerconfigjson Secret of this name instead.
    #[arg(long)]
    pub k8s_secret: Option<String>,
    /// The registry host[:port] for the Kubernetes secret (default: the
    /// configured public_host, else the listen address).
    #[arg(long)]
    pub registry: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create(TokenCreate),
    /// Revoke a token; it stops working at once.
    Revoke {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the signing keys: the current one, and retired ones that still
    /// verify the tokens they signed.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make a new current signing key. The old one keeps verifying until its
    /// tokens have expired; every node signs with the new one within
    /// 30 seconds.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
    },
}

impl AdminCommand {
    /// The configuration flags of whichever admin command this is.
    pub fn config(&self) -> &ConfigArgs {
        match self {
            AdminCommand::User { command } => match command {
                UserCommand::Create { config, .. }
                | UserCommand::List { config }
                | UserCommand::SetPassword { config, .. }
                | UserCommand::Disable { config, .. }
                | UserCommand::Enable { config, .. }
                | UserCommand::Delete { config, .. }
                | UserCommand::SetAdmin { config, .. } => config,
            },
            AdminCommand::Namespace { command } => match command {
                NamespaceCommand::Create { config, .. }
                | NamespaceCommand::SetVisibility { config, .. }
                | NamespaceCommand::List { config } => config,
            },
            AdminCommand::Member { command } => match command {
                MemberCommand::Add { config, .. } | MemberCommand::Remove { config, .. } => config,
            },
            AdminCommand::Token { command } => match command {
                TokenCommand::Create(create) => &create.config,
                TokenCommand::Revoke { config, .. } | TokenCommand::List { config } => config,
            },
            AdminCommand::Keys { command } => match command {
                KeysCommand::List { config } | KeysCommand::Rotate { config } => config,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks over the whole tree (duplicate flags
    /// between a command's arguments and the configuration's, …).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Flags and variables of every earlier release keep working.
    #[test]
    fn earlier_command_lines_still_parse() {
        let lines: &[&[&str]] = &[
            &[
                "berth",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                "/tmp/x",
                "--auth",
            ],
            &[
                "berth",
                "serve",
                "--storage",
                "s3://b/p",
                "--s3-endpoint",
                "http://e",
                "--s3-path-style",
                "true",
            ],
            &[
                "berth",
                "serve",
                "--gc-untagged",
                "true",
                "--log-format",
                "json",
                "--users-may-create-namespaces",
            ],
            &[
                "berth",
                "gc",
                "--dry-run",
                "--sweep-orphans",
                "--data-dir",
                "/tmp/x",
            ],
            &["berth", "config", "check", "--config", "/etc/berth.toml"],
            &[
                "berth",
                "admin",
                "user",
                "create",
                "alice",
                "--password-stdin",
                "--database",
                "postgres://db/b",
            ],
            &[
                "berth",
                "admin",
                "token",
                "create",
                "--name",
                "ci",
                "--scope",
                "team:pull",
                "--registry",
                "r",
            ],
            &["berth", "admin", "keys", "rotate", "--data-dir", "/tmp/x"],
        ];
        for line in lines {
            Cli::try_parse_from(line.iter()).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
    }
}

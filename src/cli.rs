//! The command line: clap definitions only. The `///` comments are the `--help` text.
//!
//! Credentials are deliberately not flags: a flag value is visible to every user of the host
//! in the process list, and clap would print an env value in `--help`. They come from
//! `VELT_API_KEY` / `VELT_AUTH_TOKEN` or from the files named by `--api-key-file` /
//! `--auth-token-file` (see `client::Credentials`).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};

use crate::engine::defaults;
pub use crate::text::parse_duration;
pub use values::*;

pub mod config;
mod values;

#[derive(Debug, Parser)]
#[command(
    name = "velt-group-sync",
    version,
    about = "Add users to Velt organization user groups in bulk, with a per-membership report.",
    after_help = "Exit codes: 0 every membership added (or planned), 1 at least one membership not added \
                  (or the report, metrics or journal could not be written), 2 usage, input or configuration \
                  error, or a stale plan (nothing sent), 3 the API rejected the credentials, 130/143 interrupted by \
                  SIGINT/SIGTERM (the report says what was sent); `plan --detailed-exitcode`: 4 changes planned."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Read options from this TOML file, keys named as the long flags (`user-column = "Work
    /// Email"`, `group-column = ["Department", "Location"]`); paths in it are relative to it.
    /// A flag given, then its environment variable, win over the file. `velt-group-sync init`
    /// writes one.
    #[arg(long, global = true, value_name = "FILE", env = "VELT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VELT_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only warnings and errors; no summary line, no progress bar.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        env = "VELT_QUIET",
        value_parser = BoolishValueParser::new()
    )]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a membership file and add every membership to its group.
    Sync(Box<SyncArgs>),
    /// Read the input and the server as `sync --mode delta|mirror|remove` would, write every
    /// change it would make to a plan file and print them; send no write. Review the file,
    /// then `apply` it.
    Plan(Box<PlanArgs>),
    /// Make exactly the changes of a plan file (from `plan`, or the removals a guard held
    /// back in a `sync`), with the same rate limiting, retries, journal, report, metrics and
    /// notifications as `sync`. Refused (exit 2, nothing sent) if the server changed since the
    /// plan was made.
    Apply(Box<ApplyArgs>),
    /// Start a configuration from an export: read it as `sync` would, choose the user, group,
    /// status, name and e-mail columns (saying why), write a commented TOML file (never over an
    /// existing one) and, when the groups are names, a group map to fill in; print what was
    /// found and the next command.
    Init(Box<InitArgs>),
    /// Read and check a membership file with the same rules as `sync`, print what is wrong
    /// line by line and the plan's counts; send nothing. Exit 0 clean, 1 invalid records,
    /// 2 unreadable.
    Validate(Box<ValidateArgs>),
    /// Run the built-in Velt emulator as a standalone server (for demos and tests).
    Emulator(Box<EmulatorArgs>),
    /// Print a shell completion script to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output, or write one page per command
    /// (`velt-group-sync.1`, `velt-group-sync-sync.1`, ...) into a folder.
    Manpage {
        /// Write `velt-group-sync.1` and a page per subcommand here instead (install them into
        /// a `man1` folder, e.g. `/usr/local/share/man/man1`).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Where the records come from and how they are read: shared by `sync` and `validate`.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Membership file (CSV, JSON, JSON Lines or a workbook), or `-` for standard input.
    #[arg(help_heading = "Input", default_value = "-", env = "VELT_INPUT")]
    pub input: PathBuf,

    /// Input format; `auto` goes by the file extension, or sniffs standard input.
    #[arg(help_heading = "Input", long, value_enum, default_value_t = FormatArg::Auto, env = "VELT_FORMAT")]
    pub format: FormatArg,

    /// Organization ID for records that do not carry one.
    #[arg(help_heading = "Input", long, value_name = "ID", env = "VELT_ORG")]
    pub org: Option<String>,

    /// Group (organizationUserGroupId) for records that do not carry one.
    #[arg(help_heading = "Input", long, value_name = "ID", env = "VELT_GROUP")]
    pub group: Option<String>,

    /// Column (or JSON key) that holds the organization ID; case-insensitive.
    #[arg(
        help_heading = "Columns and mapping",
        hide_short_help = true,
        long,
        value_name = "NAME",
        env = "VELT_ORG_COLUMN"
    )]
    pub org_column: Option<String>,

    /// Column (or JSON key) that holds the group ID; case-insensitive. Give it several times
    /// (or comma-separated) for an export with one row per person and a column per kind of
    /// group (Department, Location, ...): each non-empty cell is one more membership.
    #[arg(
        help_heading = "Columns and mapping",
        long,
        value_name = "NAME",
        env = "VELT_GROUP_COLUMN",
        value_delimiter = ','
    )]
    pub group_column: Vec<String>,

    /// Column (or JSON key) that holds the user ID; case-insensitive.
    #[arg(
        help_heading = "Columns and mapping",
        long,
        value_name = "NAME",
        env = "VELT_USER_COLUMN"
    )]
    pub user_column: Option<String>,

    /// Column (or JSON key) that holds the group's display name, used by
    /// --create-missing-groups (default: the group ID).
    #[arg(
        help_heading = "Columns and mapping",
        hide_short_help = true,
        long,
        value_name = "NAME",
        env = "VELT_GROUP_NAME_COLUMN"
    )]
    pub group_name_column: Option<String>,

    /// Make every user of the input a user of each organization it is grouped in, with its
    /// name and e-mail, before any group call (Velt's /v2/users/add; in delta and mirror
    /// modes users already there with the same name and e-mail cost nothing, and a changed
    /// name or e-mail is sent with /v2/users/update). A record without a name or a valid
    /// e-mail is `invalid`.
    #[arg(help_heading = "Provisioning", long, env = "VELT_PROVISION_USERS", value_parser = BoolishValueParser::new())]
    pub provision_users: bool,

    /// Column (or JSON key or path) that holds the user's display name (--provision-users);
    /// recognised without it: name, displayName, fullName.
    #[arg(
        help_heading = "Provisioning",
        hide_short_help = true,
        long,
        value_name = "NAME",
        env = "VELT_NAME_COLUMN",
        conflicts_with = "name_columns",
        requires = "provision_users"
    )]
    pub name_column: Option<String>,

    /// Two columns whose values, joined by a space, are the user's name, e.g.
    /// `FirstName,LastName` (--provision-users).
    #[arg(help_heading = "Provisioning", hide_short_help = true, long, value_name = "FIRST,LAST", value_parser = parse_name_columns,
          env = "VELT_NAME_COLUMNS", requires = "provision_users")]
    pub name_columns: Option<(String, String)>,

    /// Column (or JSON key or path) that holds the user's e-mail (--provision-users);
    /// recognised without it: email, mail.
    #[arg(
        help_heading = "Provisioning",
        hide_short_help = true,
        long,
        value_name = "NAME",
        env = "VELT_EMAIL_COLUMN",
        requires = "provision_users"
    )]
    pub email_column: Option<String>,

    /// Keep only records whose COLUMN is one of the values (trimmed, case-insensitive), e.g.
    /// `Status=Active`. Repeatable (all must hold; `;` also separates rules in the variable).
    /// Left-out records are counted, not reported.
    #[arg(help_heading = "Columns and mapping", long, value_name = "COLUMN=V1[,V2...]", value_parser = parse_filter,
          value_delimiter = ';', env = "VELT_INCLUDE")]
    pub include: Vec<FilterArg>,

    /// Leave out records whose COLUMN is one of the values, e.g. `type=GROUP,CUSTOMER`.
    /// Repeatable, like --include.
    #[arg(help_heading = "Columns and mapping", long, value_name = "COLUMN=V1[,V2...]", value_parser = parse_filter,
          value_delimiter = ';', env = "VELT_EXCLUDE")]
    pub exclude: Vec<FilterArg>,

    /// A group cell holds several groups separated by SEP (e.g. `,` for `"Eng, Design"`);
    /// each is trimmed, empty pieces are dropped.
    #[arg(help_heading = "Columns and mapping", hide_short_help = true, long, value_name = "SEP", env = "VELT_GROUP_SEPARATOR",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub group_separator: Option<String>,

    /// CSV mapping group values (display names, e-mails) to group IDs: columns `source` and
    /// `organizationUserGroupId` (or `groupId`), optionally `name` and `column`.
    #[arg(
        help_heading = "Columns and mapping",
        long,
        value_name = "FILE",
        env = "VELT_GROUP_MAP"
    )]
    pub group_map: Option<PathBuf>,

    /// A group value that --group-map does not list: `invalid` (the record is reported
    /// invalid), `skip` (that membership is left out, counted) or `keep` (sent as the ID).
    #[arg(help_heading = "Columns and mapping", hide_short_help = true, long, value_enum, default_value_t = Unmapped::Invalid, env = "VELT_UNMAPPED")]
    pub unmapped: Unmapped,

    /// `lower`: lower-case user IDs before de-duplication (e-mail addresses as user IDs).
    #[arg(help_heading = "Columns and mapping", hide_short_help = true, long, value_enum, default_value_t = UserIdCase::Keep, env = "VELT_USER_ID_CASE")]
    pub user_id_case: UserIdCase,

    /// The text's encoding when it is not UTF-8: any WHATWG label (`windows-1252`, `latin1`,
    /// `utf-16le`, `shift_jis`, ...). A UTF-8 or UTF-16 BOM is recognised without it.
    #[arg(help_heading = "Input", hide_short_help = true, long, value_name = "LABEL", value_parser = parse_encoding, env = "VELT_ENCODING")]
    pub encoding: Option<&'static encoding_rs::Encoding>,

    /// The line (in a workbook, the row) that names the columns. Default: the first of the
    /// first 20 lines that names the columns the run needs; lines above it are skipped.
    #[arg(help_heading = "Input", hide_short_help = true, long, value_name = "N", env = "VELT_HEADER_ROW",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_row: Option<u64>,

    /// JSON: the array of records inside a top-level object, dotted (`Report_Entry`,
    /// `Resources`, `value`, `data.users`). Without it, an object's one array of objects is
    /// taken.
    #[arg(
        help_heading = "Input",
        hide_short_help = true,
        long,
        value_name = "PATH",
        env = "VELT_RECORDS_PATH"
    )]
    pub records_path: Option<String>,

    /// The workbook's sheet to read (`--format xlsx`). Default: the first.
    #[arg(
        help_heading = "Input",
        hide_short_help = true,
        long,
        value_name = "NAME",
        env = "VELT_SHEET"
    )]
    pub sheet: Option<String>,

    /// CSV delimiter: one ASCII character, or `tab`. Default: detected from the header line.
    #[arg(help_heading = "Input", hide_short_help = true, long, value_name = "C", value_parser = parse_delimiter, env = "VELT_DELIMITER")]
    pub delimiter: Option<u8>,

    /// Take only input rows with these statuses (the input is a previous report), e.g.
    /// failed,unconfirmed,not_attempted.
    #[arg(help_heading = "Input", hide_short_help = true, long, value_name = "STATUS,...", value_delimiter = ',', value_parser = parse_status,
          env = "VELT_ONLY_STATUS")]
    pub only_status: Option<Vec<String>>,

    /// Accept an input with no records (by default exit 2: a truncated export must not pass
    /// as a good night); in mirror mode, also allow removing every member of a group.
    #[arg(help_heading = "Modes and removals", hide_short_help = true, long, env = "VELT_ALLOW_EMPTY", value_parser = BoolishValueParser::new())]
    pub allow_empty: bool,

    /// Longest line (and JSON record) read, in bytes; a longer one stops the read with an
    /// error naming its line, so that a wrong file cannot fill the memory.
    #[arg(help_heading = "Input", hide_short_help = true, long, value_name = "BYTES", default_value_t = 1 << 20, env = "VELT_MAX_RECORD_BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    pub max_record_bytes: u64,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Most user IDs per add request, for the request count.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "N", default_value_t = defaults::CHUNK_SIZE, env = "VELT_CHUNK_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub chunk_size: u32,
}

/// `emulator --window-shape`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeArg {
    Aligned,
    Anchored,
    Sliding,
    Bucket,
}

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub modes: ModeArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub ops: OpsArgs,

    /// Read, validate and plan; send nothing. The report lists every membership as `planned`.
    #[arg(help_heading = "Output and operations", long, env = "VELT_DRY_RUN", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Stop before sending anything if any record is invalid (exit 2).
    #[arg(help_heading = "Output and operations", hide_short_help = true, long, env = "VELT_STRICT", value_parser = BoolishValueParser::new())]
    pub strict: bool,

    /// Where a run whose removals a guard (--max-removals, --max-user-removals) held back
    /// writes them as a plan file, to review and then `velt-group-sync apply`. Default: beside
    /// the report (`REPORT-NAME.held-plan.json`).
    #[arg(
        help_heading = "Modes and removals",
        hide_short_help = true,
        long,
        value_name = "PATH",
        env = "VELT_HELD_PLAN"
    )]
    pub held_plan: Option<PathBuf>,
}

/// `init`: the export, and how to read it where that cannot be told from its bytes.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The export (CSV, JSON, JSON Lines or a workbook).
    #[arg(value_name = "EXPORT")]
    pub export: PathBuf,

    /// The organization every row goes to (written as `org`).
    #[arg(long, value_name = "ID")]
    pub org: Option<String>,

    /// Where to write the configuration; an existing file is never overwritten.
    #[arg(long, value_name = "FILE", default_value = "velt-group-sync.toml")]
    pub out: PathBuf,

    /// The export's format, when its name and first bytes do not tell it.
    #[arg(long, value_enum, default_value_t = crate::input::FormatArg::Auto)]
    pub format: crate::input::FormatArg,

    /// The export's encoding when it is not UTF-8 and has no byte order mark (default: UTF-8,
    /// else windows-1252).
    #[arg(long, value_name = "LABEL", value_parser = parse_encoding)]
    pub encoding: Option<&'static encoding_rs::Encoding>,

    /// The workbook's sheet (default: the first).
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
}

/// `plan`: the options of `sync` but a dry run's, and where the plan goes.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub modes: ModeArgs,

    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub send: SendArgs,

    #[command(flatten)]
    pub ops: OpsArgs,

    /// Stop before reading the server if any record is invalid (exit 2).
    #[arg(help_heading = "Output and operations", hide_short_help = true, long, env = "VELT_STRICT", value_parser = BoolishValueParser::new())]
    pub strict: bool,

    /// Write the plan file here (JSON; see docs/plan-file.md).
    #[arg(
        long,
        value_name = "PLAN.json",
        default_value = "velt-group-sync-plan.json"
    )]
    pub out: PathBuf,

    /// Exit 4 when the plan holds changes and 0 when it holds none (1, 2, 3, 130 and 143 keep
    /// their meaning), for a pipeline to tell "nothing to do" from "review this".
    #[arg(long)]
    pub detailed_exitcode: bool,
}

/// `apply`: the plan file, and how this run reaches the API and what it leaves behind; how it
/// sends (rate, chunk size, API version, base URL) is the plan's.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The plan file (from `plan`, or a `sync`'s held-back removals).
    #[arg(value_name = "PLAN.json")]
    pub plan: PathBuf,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub ops: OpsArgs,
}

/// How the run decides what to change: the mode, removals' safety limits, what is protected.
#[derive(Debug, Clone, Args)]
pub struct ModeArgs {
    /// `add`: add every membership. `delta`: read each group's members first and add only the
    /// missing ones (others are `unchanged`). `mirror`: delta, and remove members the input does
    /// not list (only in groups the input names; see --max-removals, --allow-empty). `remove`:
    /// remove every membership the input lists (a leavers' list; or a run's report with
    /// --only-status added, to undo that run); non-members are `unchanged`.
    #[arg(help_heading = "Modes and removals", long, value_enum, default_value_t = Mode::Add, env = "VELT_MODE")]
    pub mode: Mode,

    /// Mirror mode: most removals per group, a count (`25`) or a share of its current members
    /// (`10%`, at least 1). A group needing more is left alone and reported; the run exits 1.
    #[arg(help_heading = "Modes and removals", long, value_name = "N|P%", default_value = &**shown::MAX_REMOVALS, value_parser = MaxRemovals::parse,
          env = "VELT_MAX_REMOVALS")]
    pub max_removals: MaxRemovals,

    /// --provision-users: the access role new and updated users get in their organization.
    /// Default: none sent (Velt's default).
    #[arg(
        help_heading = "Provisioning",
        hide_short_help = true,
        long,
        value_enum,
        env = "VELT_ACCESS_ROLE",
        requires = "provision_users"
    )]
    pub access_role: Option<AccessRole>,

    /// Mirror mode with --provision-users: remove from each organization the input names the
    /// users it holds that the input does not list (after --include / --exclude), with
    /// Velt's /v2/users/delete, after every group call. Organizations the input never names
    /// are never touched. See --max-user-removals.
    #[arg(
        help_heading = "Provisioning", hide_short_help = true,
        long,
        env = "VELT_DEPROVISION_USERS",
        value_parser = BoolishValueParser::new(),
        requires_if("true", "provision_users")
    )]
    pub deprovision_users: bool,

    /// --deprovision-users: most users removed per organization, a count or a share of its
    /// users (at least 1); never all of them without --allow-empty. An organization needing
    /// more keeps its users, they are reported, and the run exits 1.
    #[arg(help_heading = "Provisioning", hide_short_help = true, long, value_name = "N|P%", default_value = &**shown::MAX_USER_REMOVALS,
          value_parser = MaxRemovals::parse, env = "VELT_MAX_USER_REMOVALS")]
    pub max_user_removals: MaxRemovals,

    /// Never remove these users from a group nor from their organization (accounts HR does
    /// not own: contractors, service accounts, admins). A glob on the user ID or the e-mail
    /// (`*@contractor.example`, `svc-*`; letters compared without case), or `@FILE` with one
    /// pattern a line (`#` starts a comment). Repeatable; `;` separates them in the variable.
    /// Their rows say `protected`.
    #[arg(
        help_heading = "Modes and removals",
        hide_short_help = true,
        long,
        value_name = "PATTERN|@FILE",
        value_delimiter = ';',
        env = "VELT_PROTECT_USERS"
    )]
    pub protect_users: Vec<String>,

    /// Never remove anyone from these groups (mirror and remove modes): a glob on the group
    /// ID, or `@FILE`. Repeatable; `;` separates them in the variable. Their rows say
    /// `protected`.
    #[arg(
        help_heading = "Modes and removals",
        hide_short_help = true,
        long,
        value_name = "PATTERN|@FILE",
        value_delimiter = ';',
        env = "VELT_PROTECT_GROUPS"
    )]
    pub protect_groups: Vec<String>,

    /// --provision-users: allow provisioning into an organization that holds no users yet
    /// (Velt creates it). Without it such a run sends nothing and exits 2, so that a typo in
    /// --org never makes a second organization. For the first run of a new organization.
    #[arg(help_heading = "Provisioning", hide_short_help = true, long, env = "VELT_CREATE_ORGANIZATION", value_parser = BoolishValueParser::new())]
    pub create_organization: bool,

    /// When an add answers that the group does not exist (NOT_FOUND), create it once
    /// (named from --group-name-column, or its ID) and send its users again.
    #[arg(help_heading = "Modes and removals", hide_short_help = true, long, env = "VELT_CREATE_MISSING_GROUPS", value_parser = BoolishValueParser::new())]
    pub create_missing_groups: bool,

    /// Members per page when reading groups (delta and mirror modes).
    #[arg(help_heading = "Modes and removals", hide_short_help = true, long, value_name = "N", default_value_t = defaults::PAGE_SIZE, env = "VELT_PAGE_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
}

/// Which API the run talks to.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the Velt API.
    #[arg(
        help_heading = "Connection",
        long,
        env = "VELT_BASE_URL",
        default_value = "https://api.velt.dev"
    )]
    pub base_url: String,

    /// API version used in request paths.
    #[arg(help_heading = "Connection", hide_short_help = true, long, value_enum, default_value_t = ApiVersion::V1, env = "VELT_API_VERSION")]
    pub api_version: ApiVersion,
}

/// How the run reaches the API: credentials, transport, the built-in emulator.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Allow an http:// --base-url on a host other than this machine's loopback (the
    /// credentials would cross the network in clear text).
    #[arg(help_heading = "Connection", hide_short_help = true, long, env = "VELT_ALLOW_INSECURE_HTTP", value_parser = BoolishValueParser::new())]
    pub allow_insecure_http: bool,

    /// Read the API key from this file instead of the VELT_API_KEY environment variable.
    #[arg(
        help_heading = "Connection",
        hide_short_help = true,
        long,
        value_name = "PATH",
        env = "VELT_API_KEY_FILE"
    )]
    pub api_key_file: Option<PathBuf>,

    /// Read the auth token from this file instead of the VELT_AUTH_TOKEN environment variable.
    #[arg(
        help_heading = "Connection",
        hide_short_help = true,
        long,
        value_name = "PATH",
        env = "VELT_AUTH_TOKEN_FILE"
    )]
    pub auth_token_file: Option<PathBuf>,

    /// Time allowed for one attempt (e.g. 30s, 500ms).
    #[arg(help_heading = "Connection", hide_short_help = true, long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration,
          env = "VELT_TIMEOUT")]
    pub timeout: Duration,

    /// Run against the built-in Velt emulator on a loopback port; no credentials needed.
    #[arg(help_heading = "Connection", long, conflicts_with_all = ["api_key_file", "auth_token_file"])]
    pub emulator: bool,
}

/// How fast and how hard the run sends: chunks, rate, concurrency, retries.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Most user IDs per add request.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "N", default_value_t = defaults::CHUNK_SIZE, env = "VELT_CHUNK_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub chunk_size: u32,

    /// Requests per second (fractions allowed, e.g. 0.5), or `auto`: start low, speed up while
    /// the API accepts, back off when it throttles, never above --max-rate.
    #[arg(help_heading = "Rate and retries", long, value_name = "R|auto", default_value = &**shown::RATE, value_parser = parse_rate_arg,
          env = "VELT_RATE")]
    pub rate: RateArg,

    /// The ceiling for --rate auto.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "R", default_value_t = defaults::MAX_RATE, value_parser = parse_rate,
          env = "VELT_MAX_RATE")]
    pub max_rate: f64,

    /// Requests in flight at first; raised automatically, up to --max-concurrency, when the
    /// rate times the observed latency needs more.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "C", default_value_t = defaults::CONCURRENCY, env = "VELT_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// The most requests in flight at once.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "C", default_value_t = defaults::MAX_CONCURRENCY, env = "VELT_MAX_CONCURRENCY",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_concurrency: u32,

    /// Requests the limiter lets through at once; any 1-second window holds at most RATE + BURST.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "B", default_value_t = defaults::BURST, env = "VELT_BURST",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub burst: u32,

    /// Retries per request after throttling, server faults and lost connections.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "N", default_value_t = defaults::MAX_RETRIES, env = "VELT_MAX_RETRIES")]
    pub max_retries: u32,

    /// Longest wait between retries (exponential backoff with full jitter from 500 ms).
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "DURATION", default_value = &**shown::MAX_BACKOFF, value_parser = parse_duration,
          env = "VELT_MAX_BACKOFF")]
    pub max_backoff: Duration,

    /// Longest Retry-After honoured; a longer one gives the request's users up
    /// (`not_attempted`, RESOURCE_EXHAUSTED).
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "DURATION", default_value = &**shown::MAX_RETRY_AFTER, value_parser = parse_duration,
          env = "VELT_MAX_RETRY_AFTER")]
    pub max_retry_after: Duration,

    /// Most time the whole run waits on throttling (429 RESOURCE_EXHAUSTED). Throttled
    /// requests never spend --max-retries: the run pauses (for Retry-After, the wait the
    /// message names, or 1 s doubling to 60 s) and sends them again. Past this, what was not
    /// sent is `not_attempted` and the run exits 1.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "DURATION", default_value = &**shown::MAX_THROTTLE_WAIT, value_parser = parse_duration,
          env = "VELT_MAX_THROTTLE_WAIT")]
    pub max_throttle_wait: Duration,

    /// After SIGINT/SIGTERM, how long in-flight requests may finish before the report is written.
    #[arg(help_heading = "Rate and retries", hide_short_help = true, long, value_name = "DURATION", default_value = &**shown::GRACE, value_parser = parse_duration,
          env = "VELT_GRACE")]
    pub grace: Duration,

    /// Seeds the retry backoff's jitter, so that a test or a drill waits the same each time.
    #[arg(long, env = "VELT_JITTER_SEED", value_name = "N", hide = true)]
    pub jitter_seed: Option<u64>,
}

/// What a run leaves behind and tells: report, journal, metrics, notifications.
#[derive(Debug, Clone, Args)]
pub struct OpsArgs {
    /// Resume journal: memberships confirmed added are appended here, and skipped when a run
    /// with the same input, target and journal starts again.
    #[arg(
        help_heading = "Output and operations",
        long,
        value_name = "PATH",
        env = "VELT_STATE"
    )]
    pub state: Option<PathBuf>,

    /// Where to write the report; `-` writes it to standard output. `{date}` (and `{time}`)
    /// in the file name are filled in (UTC: `report-{date}.csv` is `report-2026-12-01.csv`),
    /// so that earlier nights' reports stay; see --keep-reports.
    #[arg(
        help_heading = "Output and operations",
        long,
        value_name = "PATH",
        default_value = "velt-group-sync-report.csv",
        env = "VELT_REPORT"
    )]
    pub report: PathBuf,

    /// With a dated --report: keep the N newest reports of that name, removing older ones.
    #[arg(help_heading = "Output and operations", hide_short_help = true, long, value_name = "N", env = "VELT_KEEP_REPORTS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_reports: Option<u32>,

    /// Report format. Default: from the report's extension (.json, .jsonl, otherwise CSV).
    #[arg(
        help_heading = "Output and operations",
        hide_short_help = true,
        long,
        value_enum,
        env = "VELT_REPORT_FORMAT"
    )]
    pub report_format: Option<ReportFormat>,

    /// Write Prometheus metrics here at the end of every run (node_exporter textfile
    /// collector), atomically; the last fully successful run's time is carried over.
    #[arg(
        help_heading = "Output and operations",
        hide_short_help = true,
        long,
        value_name = "PATH",
        env = "VELT_METRICS_FILE"
    )]
    pub metrics_file: Option<PathBuf>,

    /// Push the same metrics to this Prometheus Pushgateway at the end of every run (PUT
    /// URL/metrics/job/JOB/...); a gateway that cannot be reached is a warning, never a
    /// failure of the run.
    #[arg(
        help_heading = "Output and operations",
        hide_short_help = true,
        long,
        value_name = "URL",
        env = "VELT_METRICS_PUSH",
        hide_env_values = true
    )]
    pub metrics_push: Option<String>,

    /// After the run, post its outcome to this URL: a Slack or Microsoft Teams incoming
    /// webhook (a message of their shape, told by the host), or any endpoint (a JSON
    /// document: exit code, counts, the top refusals, the first changes, the report's path).
    /// Repeatable (`;` separates them in the variable). A webhook URL is a credential: it is
    /// never logged; keep it in --notify-file. A notification that cannot be sent is a
    /// warning, never a failed run.
    #[arg(
        help_heading = "Output and operations",
        long,
        value_name = "URL",
        value_delimiter = ';',
        env = "VELT_NOTIFY_URL",
        hide_env_values = true
    )]
    pub notify: Vec<String>,

    /// Read --notify URLs from this file (one a line), for URLs kept as secrets.
    #[arg(
        help_heading = "Output and operations",
        hide_short_help = true,
        long,
        value_name = "PATH",
        env = "VELT_NOTIFY_FILE"
    )]
    pub notify_file: Option<PathBuf>,

    /// Which runs are notified: `failure` (exit other than 0), `changes` (failures and runs
    /// that changed something), `always`.
    #[arg(help_heading = "Output and operations", hide_short_help = true, long, value_enum, default_value_t = NotifyOn::Failure, env = "VELT_NOTIFY_ON")]
    pub notify_on: NotifyOn,

    /// The notification's shape: `auto` (by the URL's host), `slack`, `teams` or `json`.
    #[arg(help_heading = "Output and operations", hide_short_help = true, long, value_enum, default_value_t = NotifyFormat::Auto, env = "VELT_NOTIFY_FORMAT")]
    pub notify_format: NotifyFormat,

    /// The job the pushed metrics are grouped under.
    #[arg(
        help_heading = "Output and operations",
        hide_short_help = true,
        long,
        value_name = "NAME",
        default_value = "velt-group-sync",
        env = "VELT_METRICS_JOB"
    )]
    pub metrics_job: String,

    /// A further grouping label for the pushed metrics, KEY=VALUE (repeatable).
    #[arg(help_heading = "Output and operations", hide_short_help = true, long, value_name = "KEY=VALUE", value_parser = parse_label, env = "VELT_METRICS_LABEL",
          value_delimiter = ',')]
    pub metrics_label: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Port on 127.0.0.1 to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Refuse requests whose credentials differ from VELT_API_KEY / VELT_AUTH_TOKEN.
    #[arg(long)]
    pub require_credentials: bool,

    /// Accept at most this many requests per second; answer the rest 429 RESOURCE_EXHAUSTED.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate_limit: Option<f64>,

    /// With --rate-limit: requests accepted at once (the token bucket's size). Default: one
    /// second's worth.
    #[arg(long, value_name = "N", value_parser = parse_rate, requires = "rate_limit")]
    pub rate_burst: Option<f64>,

    /// A quota of N requests per fixed window (`30/1m`), as Velt documents for other
    /// endpoints: the rest get 429 "Rate limit exceeded. Please try again after 1 minute.".
    #[arg(long, value_name = "N/DURATION", value_parser = parse_window_limit)]
    pub window_limit: Option<(u32, Duration)>,

    /// How --window-limit's windows lie: `aligned` (on multiples of the window from the
    /// start), `anchored` (a window opens at the first request after the last one ran its
    /// length), `sliding` (at most N in any window's length) or `bucket` (N tokens refilled at
    /// N per window).
    #[arg(long, value_enum, default_value_t = ShapeArg::Aligned, requires = "window_limit")]
    pub window_shape: ShapeArg,

    /// Count each request against the quota this long after it arrives, fixed or a range
    /// (`20ms-60ms`), as real servers do.
    #[arg(long, value_name = "DURATION[-DURATION]", default_value = "0ms", value_parser = parse_latency)]
    pub count_delay: (Duration, Duration),

    /// Seed the emulator's draws (latencies, faults), so that a drill meets the same ones.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Leave Retry-After out of 429 answers (the message still names the wait).
    #[arg(long)]
    pub no_retry_after: bool,

    /// Refuse add requests with more than N user IDs (400 INVALID_ARGUMENT).
    #[arg(long, value_name = "N")]
    pub max_user_ids: Option<usize>,

    /// Answer latency, fixed (`40ms`) or a range (`20ms-80ms`).
    #[arg(long, value_name = "DURATION[-DURATION]", default_value = "0ms", value_parser = parse_latency)]
    pub latency: (Duration, Duration),

    /// Share of requests answered 503 UNAVAILABLE, from 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub unavailable_fraction: f64,

    /// Share of requests answered 500 INTERNAL, from 0 to 1.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub internal_fraction: f64,

    /// Share of connections dropped before the request is applied.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub drop_before_fraction: f64,

    /// Share of connections dropped after the request was applied (the answer is lost).
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    pub drop_after_fraction: f64,

    /// Refuse a whole add request (400 INVALID_ARGUMENT) when a user ID contains this text.
    #[arg(long, value_name = "TEXT")]
    pub invalid_user_marker: Option<String>,

    /// Groups must be created (organizations/usergroups/add) before users are added to them;
    /// adds to an unknown group are answered 404 NOT_FOUND.
    #[arg(long)]
    pub groups_must_exist: bool,

    /// Answer a group add for a user who is not a user of the organization (added with
    /// /users/add) with `success: false` for that user. (Whether Velt does is not documented.)
    #[arg(long)]
    pub require_org_users: bool,
}

use crate::client::ApiVersion;
pub use crate::engine::Mode;
pub use crate::guard::MaxRemovals;
use crate::input::FormatArg;
use crate::input::mapping::{Unmapped, UserIdCase};
use crate::notify::{NotifyFormat, NotifyOn};
use crate::output::LogFormat;
pub use crate::provision::model::AccessRole;
use crate::report::ReportFormat;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    /// The command line's defaults are the engine's typed ones, read back from `--help`'s text.
    #[test]
    fn the_command_lines_defaults_are_the_engines() {
        use crate::engine::defaults;
        let cli = Cli::try_parse_from(["velt-group-sync", "sync", "in.csv"]).unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("sync")
        };
        assert_eq!(args.send.rate, RateArg::Fixed(defaults::RATE));
        assert_eq!(args.send.max_backoff, defaults::MAX_BACKOFF);
        assert_eq!(args.send.max_retry_after, defaults::MAX_RETRY_AFTER);
        assert_eq!(args.send.max_throttle_wait, defaults::MAX_THROTTLE_WAIT);
        assert_eq!(args.send.grace, defaults::GRACE);
        assert_eq!(args.modes.max_removals, defaults::MAX_REMOVALS);
        assert_eq!(args.modes.max_user_removals, defaults::MAX_USER_REMOVALS);
        assert_eq!(&**values::shown::MAX_THROTTLE_WAIT, "30m");
    }

    #[test]
    fn latency_ranges() {
        assert_eq!(
            parse_latency("20ms-80ms"),
            Ok((Duration::from_millis(20), Duration::from_millis(80)))
        );
        assert!(parse_latency("80ms-20ms").is_err());
    }

    #[test]
    fn removal_limits() {
        let ten = MaxRemovals::parse("10%").unwrap();
        assert_eq!(ten.limit(200), 20);
        assert_eq!(ten.limit(5), 1, "at least one");
        assert_eq!(ten.limit(0), 1);
        assert_eq!(MaxRemovals::parse("3").unwrap().limit(1000), 3);
        assert_eq!(MaxRemovals::parse("0").unwrap().limit(1000), 0);
        assert!(MaxRemovals::parse("101%").is_err());
        assert!(MaxRemovals::parse("-1").is_err());
        assert!(MaxRemovals::parse("many").is_err());
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter(";;").is_err());
        assert!(parse_delimiter("\"").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

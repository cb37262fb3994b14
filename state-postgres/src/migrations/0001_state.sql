-- The state of stackpipe (issue 22): every table of the embedded redb store,
-- the team server's users and audit log, the service pipelines, and the
-- work queue runners take stack jobs from.
--
-- Names and ids are `COLLATE "C"`: they sort byte by byte, as redb's keys
-- do, so both backends list in the same order.
--
-- Records are kept as the JSON the redb store keeps (`json`, not `jsonb`:
-- the text is kept as written, so a state migrated from redb and back is
-- the same byte for byte); the columns beside them are what queries select
-- and order by.

CREATE TABLE resources (
    pipeline    text COLLATE "C"   NOT NULL,
    environment text COLLATE "C"   NOT NULL,
    resource    text COLLATE "C"   NOT NULL,
    serial      bigint NOT NULL,
    record      json   NOT NULL,
    PRIMARY KEY (pipeline, environment, resource)
);

-- A lock on a resource is bound to the run that holds it; a run's locks
-- go with it.
CREATE TABLE locks (
    pipeline    text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    resource    text COLLATE "C" NOT NULL,
    run_id      text COLLATE "C" NOT NULL,
    holder      json NOT NULL,
    PRIMARY KEY (pipeline, environment, resource)
);
CREATE INDEX locks_by_run ON locks (run_id);

CREATE TABLE runs (
    id         text   COLLATE "C" PRIMARY KEY,
    started_ms bigint NOT NULL,
    record     json   NOT NULL
);
CREATE INDEX runs_by_start ON runs (started_ms DESC, id DESC);

CREATE TABLE jobs (
    run_id      text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    node        text COLLATE "C" NOT NULL,
    record      json NOT NULL,
    PRIMARY KEY (run_id, environment, node)
);
-- A resource's history: the jobs that touched it.
CREATE INDEX jobs_by_resource ON jobs (environment, node, run_id);

-- Append-only rows of a run, in the order they were written.
CREATE TABLE logs (
    seq    bigserial PRIMARY KEY,
    run_id text COLLATE "C"      NOT NULL,
    line   json      NOT NULL
);
CREATE INDEX logs_by_run ON logs (run_id, seq);

CREATE TABLE journal (
    seq    bigserial PRIMARY KEY,
    run_id text COLLATE "C"      NOT NULL,
    entry  json      NOT NULL
);
CREATE INDEX journal_by_run ON journal (run_id, seq);

CREATE TABLE decisions (
    seq      bigserial PRIMARY KEY,
    run_id   text COLLATE "C"      NOT NULL,
    decision json      NOT NULL
);
CREATE INDEX decisions_by_run ON decisions (run_id, seq);

-- Named counters: `run_counter`, `execution_counter`.
CREATE TABLE counters (
    name  text COLLATE "C"   PRIMARY KEY,
    value bigint NOT NULL
);

-- Content-addressed: what is stored under a digest never changes.
CREATE TABLE snapshots (
    digest   text COLLATE "C" PRIMARY KEY,
    snapshot json NOT NULL
);
CREATE TABLE blobs (
    digest text COLLATE "C"  PRIMARY KEY,
    bytes  bytea NOT NULL
);

-- Service pipelines.
CREATE TABLE executions (
    id      text COLLATE "C" PRIMARY KEY,
    service text COLLATE "C" NOT NULL,
    record  json NOT NULL
);
CREATE INDEX executions_by_service ON executions (service, id DESC);
CREATE TABLE services (
    name   text COLLATE "C" PRIMARY KEY,
    record json NOT NULL
);

-- The team server's users (tokens only as hashes, inside the record) and
-- its audit log.
CREATE TABLE users (
    name   text COLLATE "C" PRIMARY KEY,
    record json NOT NULL
);
CREATE TABLE audit (
    seq   bigserial PRIMARY KEY,
    ms    bigint    NOT NULL,
    entry json      NOT NULL
);

-- The work queue: a row per stack job of a run in progress. A job of an
-- environment not yet open (an earlier one still runs, or its gate waits)
-- is `held`; once it is open, a job is `blocked` until the jobs it needs
-- are done (`waiting_on` counts them down, in the transaction that
-- completes each), then `ready`. A runner claims ready jobs with FOR
-- UPDATE SKIP LOCKED and holds each under a lease it renews; a lease that
-- runs out puts its job back to `ready`, to be resumed elsewhere (read
-- before any new apply). A job done whose node has `gate = "after"` is
-- `gated` until a person decides: approved, it is `succeeded` and what
-- needs it counts down; rejected, it is `rejected` and that is skipped.
CREATE TABLE job_queue (
    run_id       text COLLATE "C"        NOT NULL,
    environment  text COLLATE "C"        NOT NULL,
    node         text COLLATE "C"        NOT NULL,
    state        text        NOT NULL
        CHECK (state IN ('held', 'blocked', 'ready', 'claimed', 'gated', 'succeeded', 'failed', 'rejected', 'cancelled', 'skipped')),
    waiting_on   integer     NOT NULL DEFAULT 0 CHECK (waiting_on >= 0),
    runner       text,
    lease_until  timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    -- The job's place in the run's order (dependencies first): ready jobs
    -- are claimed in it, as a walk starts them.
    position     integer     NOT NULL DEFAULT 0,
    -- The state the run's owner was last told of (see `JobQueue::tell`).
    told         text,
    PRIMARY KEY (run_id, environment, node)
);
CREATE INDEX job_queue_ready ON job_queue (run_id, environment) WHERE state = 'ready';
CREATE INDEX job_queue_leases ON job_queue (lease_until) WHERE state = 'claimed';
-- What is claimed of an environment now (its parallelism counts it), and
-- whether any of its jobs is left: both as cheap at 10,000 jobs as at 10.
CREATE INDEX job_queue_claimed ON job_queue (run_id, environment) WHERE state = 'claimed';
CREATE INDEX job_queue_left ON job_queue (run_id, environment)
    WHERE state IN ('held', 'blocked', 'ready', 'claimed', 'gated');
-- The ends the run's owner has not been told of: a look costs what is new.
CREATE INDEX job_queue_untold ON job_queue (run_id)
    WHERE state IN ('gated', 'succeeded', 'failed', 'rejected', 'cancelled', 'skipped') AND told IS DISTINCT FROM state;

-- The environments of a run in progress, in the order it takes them: one
-- is open at a time. The completion that ends an environment's last job
-- opens the next (or, with `approval`, leaves it waiting for a decision),
-- or skips every later one when it did not succeed.
CREATE TABLE queue_environments (
    run_id      text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    position    integer NOT NULL,
    approval    boolean NOT NULL,
    -- Jobs of the environment claimed at once, by all runners together
    -- (the run's `--parallelism`); 0: no limit.
    parallelism integer NOT NULL DEFAULT 0 CHECK (parallelism >= 0),
    state       text    NOT NULL
        CHECK (state IN ('pending', 'waiting', 'open', 'succeeded', 'failed', 'cancelled', 'skipped')),
    PRIMARY KEY (run_id, environment),
    UNIQUE (run_id, position)
);

-- A gate a runner's job waits at mid-job (a policy's approval, a
-- `pause_before_apply`): the run's owner, which holds the run's gates,
-- asks and answers here; the runner reads the answer.
CREATE TABLE gate_requests (
    run_id      text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    node        text COLLATE "C" NOT NULL,
    gate        json NOT NULL,
    answer      json,
    PRIMARY KEY (run_id, environment, node)
);

-- Runs in the queue that were cancelled: their runners stop what they
-- hold before its next operation. `failure`: a runner could not write the
-- run's records, and the run fails with this.
CREATE TABLE queue_cancels (
    run_id  text COLLATE "C" PRIMARY KEY,
    failure text
);

-- Requests for a run in progress (a decision at a gate, a cancel) from
-- processes that cannot reach its owner's control socket: another machine,
-- another server. The owner answers them as its socket would.
CREATE TABLE run_requests (
    id      bigserial PRIMARY KEY,
    run_id  text COLLATE "C" NOT NULL,
    request json NOT NULL,
    -- Who asks, as the asking process knows them, and their role on a
    -- team server (none: the state's owner, an admin).
    decider text NOT NULL,
    role    text,
    answer  json,
    posted  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_requests_open ON run_requests (run_id) WHERE answer IS NULL;

-- Which job waits for which, within one environment of one run.
CREATE TABLE job_edges (
    run_id      text COLLATE "C" NOT NULL,
    environment text COLLATE "C" NOT NULL,
    needed      text COLLATE "C" NOT NULL,
    needing     text COLLATE "C" NOT NULL,
    PRIMARY KEY (run_id, environment, needed, needing)
);

-- The runners that are, or were, alive: what they can take, when they last said so.
CREATE TABLE runners (
    name       text COLLATE "C"        PRIMARY KEY,
    capacity   integer     NOT NULL CHECK (capacity > 0),
    started    timestamptz NOT NULL,
    heartbeat  timestamptz NOT NULL
);

-- Who runs each run in progress: the process holds the run under a lease
-- it renews. A run recorded as running whose lease has run out (its
-- process is gone) reads as interrupted, and its locks are stale.
CREATE TABLE run_leases (
    run_id      text COLLATE "C" PRIMARY KEY,
    owner       text        NOT NULL,
    control     text,
    lease_until timestamptz NOT NULL
);

-- Keys the store makes for itself: `keyed_hash`, the HMAC key of the
-- hashes of sensitive values a run records (never shown).
CREATE TABLE store_keys (
    name text  PRIMARY KEY,
    key  bytea NOT NULL
);

-- The schema a new SQLite store is made with (storage/sqlite_head.py): what the
-- migrations make of an empty file. Written by scripts/sqlite_head.py --write; do not
-- edit by hand.

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE api_account (
	name VARCHAR NOT NULL, 
	password_hash VARCHAR NOT NULL, 
	created_ms BIGINT NOT NULL, 
	updated_ms BIGINT NOT NULL, extensions VARCHAR, 
	CONSTRAINT pk_api_account PRIMARY KEY (name)
);

CREATE TABLE api_token (
	token_hash VARCHAR(64) NOT NULL, 
	account VARCHAR NOT NULL, 
	client_ip VARCHAR NOT NULL, 
	created_ms BIGINT NOT NULL, 
	last_seen_ms BIGINT NOT NULL, 
	event_ip VARCHAR, 
	event_port VARCHAR, 
	event_url VARCHAR, 
	event_urltag VARCHAR, 
	event_version VARCHAR, 
	CONSTRAINT pk_api_token PRIMARY KEY (token_hash)
);

CREATE TABLE cdr (
	id INTEGER NOT NULL, 
	sn VARCHAR NOT NULL, 
	callid VARCHAR NOT NULL, 
	ts BIGINT NOT NULL, 
	callfrom VARCHAR NOT NULL, 
	callto VARCHAR NOT NULL, 
	callduraction INTEGER NOT NULL, 
	talkduraction INTEGER NOT NULL, 
	srctrunkname VARCHAR NOT NULL, 
	dsttrunkname VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	type VARCHAR NOT NULL, 
	pincode VARCHAR NOT NULL, 
	recording VARCHAR NOT NULL, 
	didnumber VARCHAR NOT NULL, 
	line TEXT NOT NULL, 
	CONSTRAINT pk_cdr PRIMARY KEY (id), 
	CONSTRAINT uq_cdr_sn_callid UNIQUE (sn, callid)
);

CREATE TABLE login_guard (
	client_ip VARCHAR NOT NULL, 
	failures INTEGER NOT NULL, 
	locked_until_ms BIGINT NOT NULL, 
	last_failure_ms BIGINT NOT NULL, failed_account VARCHAR, 
	CONSTRAINT pk_login_guard PRIMARY KEY (client_ip)
);

CREATE TABLE sync_state (
	pbx_url VARCHAR NOT NULL, 
	sn VARCHAR, 
	since_ts BIGINT NOT NULL, 
	mark_ts BIGINT, 
	last_sync_ms BIGINT NOT NULL, 
	added_total BIGINT NOT NULL, feed_seq BIGINT, 
	CONSTRAINT pk_sync_state PRIMARY KEY (pbx_url)
);

CREATE TABLE download_audit (
	id INTEGER NOT NULL, 
	at_ms BIGINT NOT NULL, 
	account VARCHAR, 
	client_ip VARCHAR NOT NULL, 
	api_version VARCHAR NOT NULL, 
	selector VARCHAR NOT NULL, 
	starttime VARCHAR NOT NULL, 
	endtime VARCHAR NOT NULL, 
	rows BIGINT NOT NULL, 
	bytes BIGINT NOT NULL, 
	outcome VARCHAR NOT NULL, 
	errno VARCHAR, kind VARCHAR DEFAULT 'cdr' NOT NULL, 
	CONSTRAINT pk_download_audit PRIMARY KEY (id)
);

CREATE TABLE ingest_key (
	name VARCHAR NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	sn VARCHAR NOT NULL, 
	created_ms BIGINT NOT NULL, 
	last_used_ms BIGINT, 
	CONSTRAINT pk_ingest_key PRIMARY KEY (name), 
	CONSTRAINT uq_ingest_key_key_hash UNIQUE (key_hash)
);

CREATE TABLE follow_checkpoint (
	source VARCHAR NOT NULL, 
	device BIGINT NOT NULL, 
	inode BIGINT NOT NULL, 
	"offset" BIGINT NOT NULL, 
	line BIGINT NOT NULL, 
	updated_ms BIGINT NOT NULL, 
	CONSTRAINT pk_follow_checkpoint PRIMARY KEY (source)
);

CREATE TABLE recording_file (
	name VARCHAR NOT NULL, 
	path VARCHAR NOT NULL, 
	folder VARCHAR NOT NULL, 
	CONSTRAINT pk_recording_file PRIMARY KEY (name)
);

CREATE TABLE recording_folder (
	path VARCHAR NOT NULL, 
	mtime_ns BIGINT NOT NULL, 
	CONSTRAINT pk_recording_folder PRIMARY KEY (path)
);

CREATE TABLE cdr_summary (
	hour BIGINT NOT NULL, 
	status VARCHAR NOT NULL, 
	type VARCHAR NOT NULL, 
	calls BIGINT NOT NULL, 
	talk BIGINT NOT NULL, 
	duration BIGINT NOT NULL, 
	CONSTRAINT pk_cdr_summary PRIMARY KEY (hour, status, type)
);

CREATE TABLE cdr_random (
	expires_ms BIGINT NOT NULL, 
	random_hash VARCHAR(64) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	selector VARCHAR NOT NULL, 
	start_ts BIGINT NOT NULL, 
	end_ts BIGINT NOT NULL, 
	client_ip VARCHAR NOT NULL, 
	allowed_ip VARCHAR, 
	used_ms BIGINT, 
	CONSTRAINT pk_cdr_random PRIMARY KEY (expires_ms, random_hash)
)
 WITHOUT ROWID

;

CREATE TABLE recording_random (
	expires_ms BIGINT NOT NULL, 
	random_hash VARCHAR(64) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	recording VARCHAR NOT NULL, 
	client_ip VARCHAR NOT NULL, 
	allowed_ip VARCHAR, 
	used_ms BIGINT, 
	CONSTRAINT pk_recording_random PRIMARY KEY (expires_ms, random_hash)
)
 WITHOUT ROWID

;

CREATE TABLE server_key (
	name VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	CONSTRAINT pk_server_key PRIMARY KEY (name)
);

CREATE INDEX ix_api_token_last_seen_ms ON api_token (last_seen_ms);

CREATE INDEX ix_cdr_ts_callid_sn ON cdr (ts, callid, sn);

CREATE INDEX ix_download_audit_at_ms ON download_audit (at_ms);

CREATE INDEX ix_recording_file_folder ON recording_file (folder);

CREATE INDEX ix_cdr_recording ON cdr (recording) WHERE recording <> '';

CREATE INDEX ix_cdr_callfrom_ts ON cdr (callfrom, ts, callid, sn, line);

CREATE INDEX ix_cdr_callto_ts ON cdr (callto, ts, callid, sn, callfrom, line);

INSERT INTO alembic_version (version_num) VALUES ('0019');

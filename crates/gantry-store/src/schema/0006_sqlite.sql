-- Dashboard sessions: one row per signed-in browser, keyed by the SHA-256 (hex) of the
-- random id its cookie holds, so the table never holds a usable cookie. A session ends
-- when idle past idle_expires_at or at expires_at, whichever comes first; revoking its
-- token deletes it.

CREATE TABLE dashboard_sessions (
    id_digest TEXT PRIMARY KEY,
    -- The token the person signed in with (tokens.name), and its digest: every request
    -- reads the token again by digest, so a revoked or expired token signs the session out.
    token_name TEXT NOT NULL,
    token_digest TEXT NOT NULL,
    csrf_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    -- Absolute: no touch moves it.
    expires_at BIGINT NOT NULL,
    user_agent TEXT
);
CREATE INDEX dashboard_sessions_by_token ON dashboard_sessions (token_name);

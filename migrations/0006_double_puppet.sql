-- migrations/0006_double_puppet.sql - double puppeting with a user's own Matrix access token
-- (double_puppet.allow_manual: the `login-matrix <token>` command; `logout-matrix` clears it). NULL
-- = none: the automatic form (double_puppet.secrets) or the bot's way. A secret: never logged.

ALTER TABLE mx_user ADD COLUMN double_puppet_token text;

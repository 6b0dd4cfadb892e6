-- Drops everything 0001 created (data loss: only for development databases).
DROP TABLE IF EXISTS gpus;
DROP TABLE IF EXISTS deployments;
DROP TABLE IF EXISTS deployment_audit;
DROP TABLE IF EXISTS servers;
DROP TABLE IF EXISTS chutes;

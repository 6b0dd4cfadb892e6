"""The simulator's claims in a real PostgreSQL database: the scheduler's claim code
(control_api/db/claims.py) and snapshot read (control_api/db/gepetto.py). The database must
be a scratch one: `reset` empties the scheduler's tables."""

from __future__ import annotations

import json

from control_api.db import claims
from control_api.db import gepetto as q
from control_api.db.migrate import migrate
from control_api.db.pool import Database
from control_api.scheduler.model import ChuteView, ServerView
from control_api.simulate.scenario import SIM_VALIDATOR, ServerSpec


class PgStore:
    def __init__(self, dsn: str) -> None:
        migrate(dsn)
        self.db = Database(dsn, maxconn=4)

    def close(self) -> None:
        self.db.close()

    def reset(self, servers: list[ServerSpec]) -> None:
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.execute("TRUNCATE gpus, deployments, deployment_audit, servers, chutes")
            for s in servers:
                cur.execute(
                    "INSERT INTO servers (server_id, validator, name, gpu_count, hourly_cost,"
                    " status, labels) VALUES (%s, %s, %s, %s, %s, 'Ready', %s)",
                    (s.server_id, SIM_VALIDATOR, s.server_id, s.gpus, s.hourly_cost,
                     json.dumps({"gpu-short-ref": s.model})),
                )  # fmt: skip
                cur.executemany(
                    "INSERT INTO gpus (gpu_id, validator, server_id, device_info,"
                    " model_short_ref, verified) VALUES (%s, %s, %s, '{}', %s, true)",
                    [
                        (f"{s.server_id}-{i}", SIM_VALIDATOR, s.server_id, s.model)
                        for i in range(s.gpus)
                    ],
                )

    def add_chute(self, chute: ChuteView) -> None:
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO chutes (chute_id, validator, image, code, filename, ref_str, version,"
                " supported_gpus, gpu_count) VALUES (%s, %s, 'sim', '', 'app.py', 'app:c', '1',"
                " %s, %s) ON CONFLICT (chute_id) DO UPDATE SET"
                " supported_gpus = EXCLUDED.supported_gpus, gpu_count = EXCLUDED.gpu_count",
                (chute.chute_id, SIM_VALIDATOR, list(chute.supported_gpus), chute.gpu_count),
            )

    def claim(self, chute_id: str, server_id: str, job_id: str | None, dep_id: str) -> int:
        req = claims.ClaimRequest(chute_id, server_id, job_id=job_id, deployment_id=dep_id)
        with self.db.connection() as conn:
            return len(claims.claim(conn, req).gpu_ids)

    def release(self, deployment_id: str) -> None:
        with self.db.connection() as conn:
            claims.release(conn, deployment_id)

    def state(self) -> tuple[list[ServerView], list[ChuteView], set[str]]:
        with self.db.connection() as conn:
            q.snapshot_tx(conn)
            servers, chutes, deps = q.read_state(conn)
        return servers, chutes, {d.deployment_id for d in deps}

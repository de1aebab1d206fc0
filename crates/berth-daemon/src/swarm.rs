//! Swarm mode: Berth is a single engine, never part of a swarm, and answers as a Docker engine
//! outside a swarm does (503 with Docker's messages). Clients rely on these answers: docker-py's
//! tests call `POST /swarm/leave?force=true` in every teardown and ignore exactly this 503.

use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::server::AppState;

const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/swarm", get(not_manager))
        .route("/swarm/leave", post(leave))
        .route("/swarm/init", post(unsupported))
        .route("/swarm/join", post(unsupported))
        .route("/swarm/update", post(not_manager))
        .route("/swarm/unlock", post(not_manager))
        .route("/swarm/unlockkey", get(not_manager))
        .route("/nodes", get(not_manager))
        .route(
            "/nodes/{*rest}",
            get(not_manager).post(not_manager).delete(not_manager),
        )
        .route("/services", get(not_manager))
        .route(
            "/services/{*rest}",
            get(not_manager).post(not_manager).delete(not_manager),
        )
        .route("/tasks", get(not_manager))
        .route("/tasks/{*rest}", get(not_manager))
        .route("/secrets", get(not_manager))
        .route(
            "/secrets/{*rest}",
            get(not_manager).post(not_manager).delete(not_manager),
        )
        .route("/configs", get(not_manager))
        .route(
            "/configs/{*rest}",
            get(not_manager).post(not_manager).delete(not_manager),
        )
}

async fn not_manager() -> ApiError {
    ApiError::new(503, NOT_MANAGER.to_string())
}

async fn leave() -> ApiError {
    ApiError::new(503, "This node is not part of a swarm".to_string())
}

async fn unsupported() -> ApiError {
    ApiError::new(
        503,
        "swarm mode is not supported by Berth: it runs containers on this engine only".to_string(),
    )
}

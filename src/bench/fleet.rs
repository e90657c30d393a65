//! The agents and rooms a run creates, through the controller key, and their removal
//! at the end (unless `--keep`).

use std::collections::VecDeque;
use std::sync::Arc;

use broodlink_protocol::{
    AgentActionResult, AgentInviteParams, AgentInviteResult, AgentRevokeParams, RoomActionResult, RoomCreateParams,
    RoomDeleteParams, RoomJoinParams, RoomResult, Visibility,
};
use futures_util::future::join_all;
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{Client, Connector, EventSink, PendingCall};
use super::error::BenchError;
use super::stats::Checks;
use super::Target;

/// Requests the controller keeps in flight while inviting or revoking many agents.
const CONTROLLER_WINDOW: usize = 64;

/// An agent the run invited.
#[derive(Debug, Clone)]
pub struct Invited {
    pub agent_id: String,
    pub api_key: String,
}

/// The controller's connection and everything created through it.
pub struct Fleet {
    controller: Client,
    connector: Connector,
    /// Names every agent and room of this run: `bench-<tag>-…`.
    tag: String,
    keep: bool,
    agents: Vec<String>,
    rooms: Vec<String>,
}

impl Fleet {
    /// Connects and authenticates as the controller.
    pub async fn open(target: &Target) -> Result<Fleet, BenchError> {
        let connector = Connector::new(&target.url);
        let (controller, _) = connector.agent(&target.controller_key, None).await?;
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        Ok(Fleet { controller, connector, tag, keep: target.keep, agents: Vec::new(), rooms: Vec::new() })
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Invites `count` participants (pipelined on the controller's connection).
    pub async fn invite(&mut self, count: usize) -> Result<Vec<Invited>, BenchError> {
        let first = self.agents.len();
        let params =
            (first..first + count).map(|i| AgentInviteParams { display_name: format!("bench-{}-{i}", self.tag) });
        let results = pipelined::<_, AgentInviteResult>(&mut self.controller, "agent.invite", params).await;
        let mut invited = Vec::with_capacity(count);
        let mut failure = None;
        for result in results {
            match result {
                Ok(agent) => {
                    // Remembered at once, so cleanup revokes it even if a later invite failed.
                    self.agents.push(agent.agent_id.clone());
                    invited.push(Invited { agent_id: agent.agent_id, api_key: agent.api_key });
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        failure.map_or(Ok(invited), Err)
    }

    /// Creates a public room owned by `owner`, and has every client in `joiners` join it.
    pub async fn room(&mut self, owner: &mut Client, joiners: &mut [&mut Client]) -> Result<String, BenchError> {
        let params = RoomCreateParams {
            name: format!("bench-{}-room-{}", self.tag, self.rooms.len()),
            visibility: Some(Visibility::Public),
            description: Some("created by `broodlink bench`".into()),
        };
        let created: RoomResult = owner.call("room.create", &params).await?;
        let room_id = created.room.room_id;
        self.rooms.push(room_id.clone());
        let joins = joiners.iter_mut().map(|client| {
            let params = RoomJoinParams { room_id: room_id.clone() };
            async move { client.call::<_, RoomResult>("room.join", &params).await }
        });
        for joined in join_all(joins).await {
            joined?;
        }
        Ok(room_id)
    }

    /// Deletes the rooms and revokes the agents of this run, unless `--keep`; what
    /// failed is returned as failed checks.
    pub async fn finish(mut self) -> Checks {
        let mut checks = Checks::new();
        if self.keep {
            self.controller.close().await;
            return checks;
        }
        for room_id in std::mem::take(&mut self.rooms) {
            let params = RoomDeleteParams { room_id: room_id.clone() };
            if let Err(e) = self.controller.call::<_, RoomActionResult>("room.delete", &params).await {
                checks.fail(format!("cleanup: deleting room {room_id}: {e}"));
            }
        }
        let agents = std::mem::take(&mut self.agents);
        let params = agents
            .iter()
            .map(|id| AgentRevokeParams { agent_id: id.clone(), reason: Some("benchmark finished".into()) });
        let results = pipelined::<_, AgentActionResult>(&mut self.controller, "agent.revoke", params).await;
        for (agent_id, result) in agents.iter().zip(results) {
            if let Err(e) = result {
                checks.fail(format!("cleanup: revoking agent {agent_id}: {e}"));
            }
        }
        self.controller.close().await;
        checks
    }

    /// What `--keep` leaves behind.
    pub fn kept(&self) -> Option<String> {
        self.keep.then(|| format!("kept {} agents and rooms {:?}", self.agents.len(), self.rooms))
    }
}

/// Connects and authenticates each agent, `concurrency` at a time, in order.
pub async fn connect(
    connector: &Connector,
    agents: &[Invited],
    sinks: Vec<Option<Arc<dyn EventSink>>>,
    concurrency: usize,
) -> Result<Vec<Client>, BenchError> {
    stream::iter(agents.iter().zip(sinks))
        .map(|(agent, sink)| async move { connector.agent(&agent.api_key, sink).await.map(|(client, _)| client) })
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

/// Calls `method` once per params on `client`, up to [`CONTROLLER_WINDOW`] in flight;
/// the results in order.
async fn pipelined<P: Serialize, R: DeserializeOwned>(
    client: &mut Client,
    method: &'static str,
    params: impl IntoIterator<Item = P>,
) -> Vec<Result<R, BenchError>> {
    let mut results = Vec::new();
    let mut in_flight = VecDeque::with_capacity(CONTROLLER_WINDOW);
    for p in params {
        if in_flight.len() == CONTROLLER_WINDOW {
            if let Some(call) = in_flight.pop_front() {
                results.push(finish(call).await);
            }
        }
        in_flight.push_back(client.start(method, &p).await);
    }
    for call in in_flight {
        results.push(finish(call).await);
    }
    results
}

async fn finish<R: DeserializeOwned>(call: Result<PendingCall, BenchError>) -> Result<R, BenchError> {
    call?.finish().await
}

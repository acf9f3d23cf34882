//! `/v1/coordinate/*`: the network coordinates agents measured, and the
//! `?near=` sort that the catalog and health reads share.
//!
//! - `datacenters` lists the servers' coordinates per datacenter (Consul's
//!   WAN pool view; cairn has no WAN pool, so it is this datacenter's
//!   servers, by their WAN names `<node>.<dc>`, with the coordinates they
//!   measured on the LAN);
//! - `nodes` and `node/<n>` read the coordinates table, filtered by
//!   `node:read` and `?segment`, blocking on the table's index; an unknown
//!   node is a bare 404, as Consul answers it;
//! - `update` queues a coordinate on a server (`node:write`), which writes
//!   it in its next batch.

use super::blocking::{self, Watch};
use super::decode::decode_body;
use super::wire::{empty_ok, require, set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::query::{QResult, Reader};
use crate::catalog::Table;
use crate::coordinate::{sort_by_distance, Coordinate, CoordinateEntry};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

/// The node a `?near=` names (`_agent`: this agent's), if any.
pub(crate) fn near_node(ctx: &Ctx) -> Option<String> {
    match ctx.query.get("near") {
        None | Some("") => None,
        Some("_agent") => Some(ctx.config.node_name.clone()),
        Some(n) => Some(n.to_string()),
    }
}

/// Sorts `items` by estimated RTT from `near`'s coordinate, nodes without
/// one last; leaves them as they are when there is no `near` or its node
/// has no coordinate (as Consul's `sortNodesByDistanceFrom` does).
pub(crate) fn sort_near<T>(
    r: &Reader,
    near: Option<&str>,
    items: &mut Vec<T>,
    node_of: impl Fn(&T) -> &str,
) -> QResult<()> {
    let Some(source) = near else { return Ok(()) };
    let coords = r.coordinate_map()?;
    let Some(from) = coords.get(source) else {
        return Ok(());
    };
    sort_by_distance(items, from, |item| coords.get(node_of(item)).cloned());
    Ok(())
}

/// `?segment=` keeps one segment's entries (Consul: only when present).
fn segment_filter(ctx: &Ctx, entries: &mut Vec<CoordinateEntry>) {
    if let Some(segment) = ctx.query.get("segment") {
        entries.retain(|e| e.segment == segment);
    }
}

fn readable(authz: &Authorizer, entries: &mut Vec<CoordinateEntry>) -> bool {
    let before = entries.len();
    entries.retain(|e| authz.allows(Resource::Node, &e.node, Access::Read));
    entries.len() != before
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DatacenterMap {
    datacenter: String,
    #[serde(rename = "AreaID")]
    area_id: &'static str,
    coordinates: Vec<WanEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WanEntry {
    node: String,
    coord: Coordinate,
}

/// `GET /v1/coordinate/datacenters`: each datacenter's servers with
/// their WAN coordinates (names without `.<dc>`, as Consul strips them),
/// nearest datacenter first.
pub async fn datacenters(ctx: Ctx) -> ApiResult {
    let mut coords = ctx.federation.wan_coordinates();
    let maps: Vec<DatacenterMap> = ctx
        .federation
        .datacenters()
        .into_iter()
        .map(|dc| {
            let coordinates = coords
                .remove(&dc)
                .unwrap_or_default()
                .into_iter()
                .map(|(node, coord)| WanEntry { node, coord })
                .collect();
            DatacenterMap {
                datacenter: dc,
                area_id: "wan",
                coordinates,
            }
        })
        .collect();
    Ok(ctx.json(&maps))
}

/// `GET /v1/coordinate/nodes`.
pub async fn nodes(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (entries, index) = blocking::query(&ctx, &opts, Watch::Coordinates, |r| {
        let mut entries = r.coordinates()?;
        filtered = readable(&authz, &mut entries);
        segment_filter(&ctx, &mut entries);
        Ok((entries, r.index(&[Table::Coordinates])?))
    })
    .await?;
    let mut resp = ctx.json(&entries);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// `GET /v1/coordinate/node/<node>`: its entries, or a 404 with no body.
pub async fn node(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let name = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (entries, index) = blocking::query(&ctx, &opts, Watch::Coordinates, |r| {
        let mut entries = r.node_coordinates(&name)?;
        filtered = readable(&authz, &mut entries);
        segment_filter(&ctx, &mut entries);
        Ok((entries, r.index(&[Table::Coordinates])?))
    })
    .await?;
    let mut resp = if entries.is_empty() {
        StatusCode::NOT_FOUND.into_response()
    } else {
        ctx.json(&entries)
    };
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

/// Consul's `CoordinateUpdateRequest` as the HTTP body carries it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateBody {
    #[serde(default)]
    #[allow(dead_code)] // accepted, as Consul's decoder does; this DC only
    datacenter: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    coord: Option<Coordinate>,
}

/// `PUT /v1/coordinate/update`: queued on a server, written with its next
/// batch (so visible within about a second, as Consul's are after its
/// update period).
pub async fn update(ctx: Ctx) -> ApiResult {
    let body: UpdateBody = decode_body(&ctx.body)?;
    let reference = Coordinate::new(&crate::coordinate::Config::default());
    // Consul's server refuses these before the ACL check.
    let coord = body
        .coord
        .ok_or_else(|| ApiError::Internal("invalid coordinate".into()))?;
    if !coord.is_valid() {
        return Err(ApiError::Internal("invalid coordinate".into()));
    }
    if !reference.is_compatible_with(&coord) {
        return Err(ApiError::Internal("incompatible coordinate".into()));
    }
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Node, &body.node, Access::Write)?;
    ctx.consensus
        .update_coordinates(vec![CoordinateEntry {
            node: body.node,
            segment: body.segment,
            coord,
        }])
        .await?;
    Ok(empty_ok())
}

//! `CriClient`: kubelet's side of the CRI (v1) image service, over the unix
//! socket of a containerd started with [`Containerd::start_cri`]. It pulls
//! as kubelet does: `PullImage` with the pod's pull secret as an
//! [`AuthConfig`], then `ImageStatus` / `ListImages`.
//!
//! Bindings: the `k8s-cri` crate (tonic 0.14). Its `v1` proto is newer than
//! the cri-api v0.25 that containerd 1.6 builds against, but the image
//! service messages used here (`PullImageRequest` fields 1-3, `AuthConfig`
//! 1-6, `ImageSpec` 1-2) are the same on the wire; newer fields stay unset.
//!
//! RPC failures come back as the [`tonic::Status`] containerd sent: its
//! message is the pull error a kubelet would log.
//!
//! [`Containerd::start_cri`]: crate::containerd::Containerd::start_cri

use std::path::Path;
use std::time::Duration;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
pub use k8s_cri::v1::{AuthConfig, Image, ImageSpec as CriImageSpec};
use k8s_cri::v1::{ImageStatusRequest, ListImagesRequest, PullImageRequest, VersionRequest};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::containerd::PULL_DEADLINE;
use crate::error::{Error, Result};

/// How long the CRI service gets to answer `Version` after containerd is up
/// (it refuses calls until its own initialisation has finished).
pub const CRI_READY_DEADLINE: Duration = Duration::from_secs(20);

/// The CRI API version containerd 1.6 reports for `runtime.v1`.
pub const CRI_API_VERSION: &str = "v1";

/// A CRI client on one containerd socket.
#[derive(Debug, Clone)]
pub struct CriClient {
    images: ImageServiceClient<Channel>,
    runtime: RuntimeServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the containerd gRPC socket at `socket` and waits until
    /// the CRI runtime service answers `Version` with API `v1`. Each later
    /// call is bounded by [`PULL_DEADLINE`].
    pub async fn connect(socket: &Path) -> Result<CriClient> {
        let uri = format!("unix://{}", socket.display());
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| Error::invalid("CRI endpoint", format!("{uri}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(PULL_DEADLINE);
        let channel = endpoint.connect_lazy();
        let mut client =
            CriClient { images: ImageServiceClient::new(channel.clone()), runtime: RuntimeServiceClient::new(channel) };
        let start = Instant::now();
        loop {
            let status = match client.runtime.version(VersionRequest { version: CRI_API_VERSION.into() }).await {
                Ok(v) => {
                    let api = &v.get_ref().runtime_api_version;
                    if api == CRI_API_VERSION {
                        return Ok(client);
                    }
                    let detail = format!("{uri} answers runtime API {api:?}; this client speaks {CRI_API_VERSION:?}");
                    return Err(Error::invalid("CRI version", detail));
                }
                Err(status) => status,
            };
            if start.elapsed() >= CRI_READY_DEADLINE {
                return Err(Error::NotReady {
                    what: format!("the CRI service at {uri}"),
                    deadline: CRI_READY_DEADLINE,
                    detail: status.to_string(),
                    log_tail: "(read containerd's log: did its CRI plugin load?)".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `PullImage` of `image` (`host/repo:tag` or `host/repo@sha256:…`)
    /// with `auth` as kubelet sends a pull secret, and no sandbox config.
    /// Returns the image ref containerd answers (the config digest).
    pub async fn pull_image(&mut self, image: &str, auth: Option<AuthConfig>) -> Result<String, tonic::Status> {
        let req = PullImageRequest { image: Some(spec(image)), auth, sandbox_config: None };
        Ok(self.images.pull_image(req).await?.into_inner().image_ref)
    }

    /// `ImageStatus` of `image`; `None` when containerd does not have it.
    pub async fn image_status(&mut self, image: &str) -> Result<Option<Image>, tonic::Status> {
        let req = ImageStatusRequest { image: Some(spec(image)), verbose: false };
        Ok(self.images.image_status(req).await?.into_inner().image)
    }

    /// `ListImages` with no filter.
    pub async fn list_images(&mut self) -> Result<Vec<Image>, tonic::Status> {
        Ok(self.images.list_images(ListImagesRequest { filter: None }).await?.into_inner().images)
    }
}

fn spec(image: &str) -> CriImageSpec {
    CriImageSpec { image: image.to_string(), ..Default::default() }
}

/// A pull secret's username and password as kubelet passes them: kubelet's
/// keyring (`BasicDockerKeyring.Add`) fills only `username`, `password`
/// (and email), so `server_address` is empty unless given here.
pub fn basic_auth(username: &str, password: &str, server_address: Option<&str>) -> AuthConfig {
    AuthConfig {
        username: username.into(),
        password: password.into(),
        server_address: server_address.unwrap_or_default().into(),
        ..Default::default()
    }
}

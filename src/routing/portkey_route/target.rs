//! Where a Portkey-routed request goes: the concrete host (an Azure resource or a Bedrock
//! region filled into the provider's base URL, or the caller's custom host) and the upstream
//! path for the provider's URL scheme.

use std::sync::Arc;

use http::HeaderValue;

use super::super::portkey::PortkeyConfig;
use super::super::url::{is_dns_label, BaseUrl, RESOURCE};
use super::super::{push_query, ProviderRoute, RouteError};
use super::{bad, field, Headers, AWS_REGION, AZURE_API_VERSION, AZURE_DEPLOYMENT, AZURE_RESOURCE};
use crate::vocab::{
    PathStyle, Provider, AZURE_AI_DEFAULT_API_VERSION, AZURE_OPENAI_DEFAULT_API_VERSION,
    BEDROCK_DEFAULT_REGION,
};

pub(super) fn concrete_host(
    provider: Provider,
    base: &BaseUrl,
    pr: &ProviderRoute,
    custom: bool,
    h: Headers<'_>,
    cfg: &PortkeyConfig,
) -> Result<(Arc<str>, HeaderValue), RouteError> {
    if !custom {
        if let Some(f) = &pr.fixed {
            return Ok((f.host.clone(), f.host_header.clone()));
        }
    }
    let resource = if provider.is_azure() && base.host.contains(RESOURCE) {
        let r = field(h, &AZURE_RESOURCE, cfg.resource_name.as_deref())?.ok_or(
            RouteError::MissingField {
                header: "x-portkey-azure-resource-name",
                provider,
            },
        )?;
        if !is_dns_label(r) {
            return Err(bad(
                "x-portkey-azure-resource-name",
                "must be a DNS label (letters, digits, '-')",
            ));
        }
        Some(r)
    } else {
        None
    };
    let region = if provider == Provider::Bedrock {
        let r = field(h, &AWS_REGION, cfg.aws_region.as_deref())?.unwrap_or(BEDROCK_DEFAULT_REGION);
        if !is_dns_label(r) {
            return Err(bad(
                "x-portkey-aws-region",
                "must be a region name such as us-east-1",
            ));
        }
        Some(r)
    } else {
        None
    };
    let host = base.host_with(resource, region);
    let host_header = HeaderValue::from_str(&base.host_header(&host)).map_err(|_| {
        bad(
            "x-portkey-custom-host",
            "has characters not allowed in a Host header",
        )
    })?;
    Ok((Arc::from(&*host), host_header))
}

pub(super) fn upstream_path(
    provider: Provider,
    base: &BaseUrl,
    pr: &ProviderRoute,
    op: &str,
    query: Option<&str>,
    h: Headers<'_>,
    cfg: &PortkeyConfig,
) -> Result<Option<String>, RouteError> {
    // The client's own path already is `/v1/{op}?{query}`.
    if provider.path_style() == PathStyle::Append && &*base.path == "/v1" {
        return Ok(None);
    }
    let mut p = String::with_capacity(base.path.len() + op.len() + 96);
    p.push_str(&base.path);
    match provider.path_style() {
        PathStyle::Append => {
            p.push('/');
            p.push_str(op);
            push_query(&mut p, query, None);
        }
        PathStyle::AzureOpenAi => {
            let version = api_version(h, cfg, pr, AZURE_OPENAI_DEFAULT_API_VERSION)?;
            if version == "v1" || version == "preview" {
                p.push_str("/openai/v1/");
                p.push_str(op);
                if version == "preview" {
                    p.push_str("?api-version=preview");
                }
            } else {
                let deployment = field(h, &AZURE_DEPLOYMENT, cfg.deployment_id.as_deref())?.ok_or(
                    RouteError::MissingField {
                        header: "x-portkey-azure-deployment-id",
                        provider,
                    },
                )?;
                if !deployment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(bad(
                        "x-portkey-azure-deployment-id",
                        "may hold only letters, digits, '-', '_' and '.'",
                    ));
                }
                p.push_str("/openai/deployments/");
                p.push_str(deployment);
                p.push('/');
                p.push_str(op);
                p.push_str("?api-version=");
                p.push_str(version);
            }
            push_query(&mut p, query, Some("api-version"));
        }
        PathStyle::AzureAi => {
            let version = api_version(h, cfg, pr, AZURE_AI_DEFAULT_API_VERSION)?;
            p.push_str("/models/");
            p.push_str(op);
            p.push_str("?api-version=");
            p.push_str(version);
            push_query(&mut p, query, Some("api-version"));
        }
    }
    Ok(Some(p))
}

fn api_version<'a>(
    h: Headers<'a>,
    cfg: &'a PortkeyConfig,
    pr: &'a ProviderRoute,
    default: &'static str,
) -> Result<&'a str, RouteError> {
    let v = field(h, &AZURE_API_VERSION, cfg.api_version.as_deref())?
        .or(pr.api_version.as_deref())
        .unwrap_or(default);
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad(
            "x-portkey-azure-api-version",
            "may hold only letters, digits, '-' and '.'",
        ));
    }
    Ok(v)
}

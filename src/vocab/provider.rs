//! The provider table: every upstream keyway knows, its default base URL and how it wants the
//! credential. Adding a provider is one row here; nothing else matches on slugs.

use std::fmt;

/// How a provider expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `api-key: <key>` (Azure); an Entra token still goes as Bearer.
    AzureApiKey,
    /// `x-api-key: <key>` plus `anthropic-version` on the native API.
    Anthropic,
    /// No credential at all (a local Ollama).
    None,
}

/// How the upstream path is built from the client's `/v1/{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// `{base}/{op}`: the OpenAI-compatible family.
    Append,
    /// `{base}/openai/deployments/{deployment}/{op}?api-version=…` or `{base}/openai/v1/{op}`.
    AzureOpenAi,
    /// `{base}/models/{op}?api-version=…` (Azure AI Foundry model inference).
    AzureAi,
}

macro_rules! providers {
    ($( $variant:ident => $slug:literal [$($alias:literal),*], $base:literal, $auth:ident, $path:ident; )*) => {
        /// Every provider keyway routes to. The discriminant indexes metric label arrays.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Provider { $($variant),* }

        impl Provider {
            pub const ALL: &'static [Provider] = &[$(Provider::$variant),*];

            /// Parses a Portkey provider slug (and the aliases of seed 001).
            pub fn from_slug(slug: &str) -> Option<Provider> {
                match slug {
                    $($slug $(| $alias)* => Some(Provider::$variant),)*
                    _ => None,
                }
            }

            /// The canonical slug, also the metric label.
            pub fn as_str(self) -> &'static str {
                match self { $(Provider::$variant => $slug),* }
            }

            /// Default base URL; Azure ones hold a `{resource}` placeholder, Bedrock `{region}`.
            pub fn default_base_url(self) -> &'static str {
                match self { $(Provider::$variant => $base),* }
            }

            pub fn auth_style(self) -> AuthStyle {
                match self { $(Provider::$variant => AuthStyle::$auth),* }
            }

            pub fn path_style(self) -> PathStyle {
                match self { $(Provider::$variant => PathStyle::$path),* }
            }
        }
    };
}

providers! {
    OpenAi => "openai" [], "https://api.openai.com/v1", Bearer, Append;
    Anthropic => "anthropic" [], "https://api.anthropic.com/v1", Anthropic, Append;
    AzureOpenAi => "azure-openai" [], "https://{resource}.openai.azure.com", AzureApiKey, AzureOpenAi;
    AzureAi => "azure-ai" [], "https://{resource}.services.ai.azure.com", AzureApiKey, AzureAi;
    Google => "google" [], "https://generativelanguage.googleapis.com/v1beta/openai", Bearer, Append;
    Bedrock => "bedrock" [], "https://bedrock-runtime.{region}.amazonaws.com/openai/v1", Bearer, Append;
    Cohere => "cohere" [], "https://api.cohere.ai/compatibility/v1", Bearer, Append;
    Mistral => "mistral-ai" ["mistral"], "https://api.mistral.ai/v1", Bearer, Append;
    Together => "together-ai" [], "https://api.together.xyz/v1", Bearer, Append;
    Groq => "groq" [], "https://api.groq.com/openai/v1", Bearer, Append;
    Perplexity => "perplexity-ai" ["perplexity"], "https://api.perplexity.ai", Bearer, Append;
    Ollama => "ollama" [], "http://localhost:11434/v1", None, Append;
    DeepSeek => "deepseek" [], "https://api.deepseek.com/v1", Bearer, Append;
    Fireworks => "fireworks-ai" [], "https://api.fireworks.ai/inference/v1", Bearer, Append;
    OpenRouter => "openrouter" [], "https://openrouter.ai/api/v1", Bearer, Append;
    Anyscale => "anyscale" [], "https://api.endpoints.anyscale.com/v1", Bearer, Append;
}

impl Provider {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_azure(self) -> bool {
        matches!(self, Provider::AzureOpenAi | Provider::AzureAi)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Azure OpenAI `api-version` used when the client names none (latest GA data-plane version).
pub const AZURE_OPENAI_DEFAULT_API_VERSION: &str = "2024-10-21";
/// Azure AI Foundry model-inference `api-version` used when the client names none.
pub const AZURE_AI_DEFAULT_API_VERSION: &str = "2024-05-01-preview";
/// Bedrock region used when `x-portkey-aws-region` is absent.
pub const BEDROCK_DEFAULT_REGION: &str = "us-east-1";
/// `anthropic-version` sent when the client sends none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_aliases_resolve() {
        for p in Provider::ALL {
            assert_eq!(Provider::from_slug(p.as_str()), Some(*p));
        }
        assert_eq!(Provider::from_slug("mistral"), Some(Provider::Mistral));
        assert_eq!(
            Provider::from_slug("perplexity"),
            Some(Provider::Perplexity)
        );
        assert_eq!(Provider::from_slug("OpenAI"), None);
        assert_eq!(Provider::from_slug(""), None);
    }

    #[test]
    fn indexes_are_dense() {
        for (i, p) in Provider::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }
}

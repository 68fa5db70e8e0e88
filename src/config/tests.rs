use super::*;

fn env() -> Env {
    Env::from_pairs([
        ("AZ_KEY", "from-env"),
        ("TRUSTED_CUSTOM_HOSTS", "10.0.0.5, x.internal"),
    ])
}

#[test]
fn no_file_gives_defaults() {
    let c = load(None, &Env::default()).unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN);
    assert_eq!(c.metrics_listen, DEFAULT_METRICS_LISTEN);
    assert!(c.routes.is_empty());
}

#[test]
fn full_example_validates() {
    let c = from_str(
        r#"
            threads = 2
            trusted_custom_hosts = ["127.0.0.1"]
            [upstream]
            read_timeout_ms = 1000
            [providers.openai]
            base_url = "http://127.0.0.1:9/v1"
            api_key = "sk-x"
            [providers.mistral]
            api_key_env = "AZ_KEY"
            [providers.azure-openai]
            api_version = "2025-01-01"
            [credentials.az]
            type = "api_key"
            key_env = "AZ_KEY"
            [[routes]]
            name = "azure"
            path_prefix = "/openai/"
            provider = "azure-openai"
            upstream = "https://r.openai.azure.com"
            credential = "az"
            "#,
        &env(),
    )
    .unwrap();
    assert_eq!(c.threads, 2);
    assert_eq!(c.timeouts.read, Duration::from_millis(1000));
    assert!(c.trusted_custom_hosts.allows("10.0.0.5", 1));
    assert!(c.trusted_custom_hosts.allows("127.0.0.1", 1));
    assert_eq!(
        c.providers[&Provider::Mistral]
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "from-env"
    );
    assert_eq!(
        c.routes[0].targets.leaves()[0].target.provider,
        Provider::AzureOpenAi
    );
}

fn err(text: &str) -> String {
    from_str(text, &env()).unwrap_err().to_string()
}

#[test]
fn unknown_keys_name_their_path() {
    let e = err("[providers.openai]\nbse_url = \"x\"\n");
    assert!(
        e.contains("providers.openai") && e.contains("bse_url"),
        "{e}"
    );
    let e = err("[[routes]]\nname=\"a\"\npath_prefix=\"/a\"\nprovider=\"openai\"\nupstream=\"https://a\"\ncredential=\"c\"\nextra=1\n");
    assert!(e.contains("routes[0]") && e.contains("extra"), "{e}");
    let e = err("lisen = \"x\"\n");
    assert!(e.contains("lisen"), "{e}");
}

#[test]
fn invalid_values_name_their_path() {
    assert!(err("[providers.nope]\n").contains("providers.nope"));
    assert!(
        err("[providers.openai]\nbase_url = \"ftp://x\"\n").contains("providers.openai.base_url")
    );
    assert!(err("[providers.openai]\napi_key_env = \"MISSING\"\n").contains("MISSING"));
    assert!(err("[providers.openai]\napi_version = \"1\"\n").contains("api_version"));
    assert!(err("listen = \"nope\"\n").contains("listen"));
    assert!(err("[upstream]\nread_timeout_ms = 0\n").contains("upstream.read_timeout_ms"));
    assert!(err("[credentials.c]\ntype = \"magic\"\n").contains("credentials.c.type"));
    let e = err("[[routes]]\nname=\"a\"\npath_prefix=\"/a\"\nprovider=\"openai\"\nupstream=\"https://a\"\ncredential=\"missing\"\n");
    assert!(e.contains("routes[0].credential"), "{e}");
}

#[test]
fn listener_buffers_and_the_keepalive_pool() {
    let c = load(None, &Env::default()).unwrap();
    assert_eq!(
        c.listener,
        ListenerSettings {
            read_buffer: DEFAULT_READ_BUFFER,
            write_buffer: DEFAULT_WRITE_BUFFER,
            h2: c.listener.h2,
        }
    );
    assert_eq!(c.keepalive_pool, 128);
    let c = from_str(
        "[listener]\nread_buffer_bytes = 4096\nwrite_buffer_bytes = 8192\n[upstream]\nkeepalive_pool_size = 512\n",
        &env(),
    )
    .unwrap();
    assert_eq!(c.listener.read_buffer, 4096);
    assert_eq!(c.listener.write_buffer, 8192);
    assert_eq!(c.keepalive_pool, 512);
    let e = err("[listener]\nwrite_buffer_bytes = 2000000\n");
    assert!(e.contains("listener.write_buffer_bytes"), "{e}");
    let e = err("[listener]\nread_bufer_bytes = 1\n");
    assert!(e.contains("read_bufer_bytes"), "{e}");
    let e = err("[upstream]\nkeepalive_pool_size = 0\n");
    assert!(e.contains("upstream.keepalive_pool_size"), "{e}");
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let c = from_str("[providers.openai]\napi_key = \"sk-hidden-123\"\n", &env()).unwrap();
    assert!(!format!("{c:?}").contains("sk-hidden-123"));
}

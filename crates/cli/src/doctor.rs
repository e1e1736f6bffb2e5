//! `missive doctor`: is this configuration ready to send real mail? It checks the sending
//! identity, DKIM and the public URL (the findings `serve` logs and `/health` lists), prints
//! the DNS records to publish, and connects to the SMTP relay as a send would. It opens no
//! store and changes nothing. (It cannot look the records up: this build has no DNS client,
//! and a check from inside the network may see other answers than receivers do.)

use missive_delivery::DkimSigner;
use missive_sending::setup::{SetupWarning, setup_warnings};

use crate::config::Config;
use crate::serve::{dkim_domain, dkim_key_file, smtp_transport};

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let d = &cfg.delivery;
    let sender = cfg.sender_config();
    let domain = dkim_domain(&cfg);
    let relay = smtp_transport(&cfg)?;
    let mut problems = 0;

    println!("Sending identity");
    println!("  From:              {}", sender.from_address);
    println!("  bounces to:        {}", sender.bounce_address);
    println!("  Message-ID domain: {}", sender.message_id_domain);
    println!("  links point at:    {}", sender.public_url);
    println!("  DKIM:              d={domain}, s={}", d.dkim.selector);
    match &d.smtp {
        Some(s) => println!("  relay:             {}:{} ({})", s.host, s.port, s.tls),
        None => println!(
            "  relay:             none (mail is written to {})",
            cfg.data_dir.join("maildir").display()
        ),
    }

    let warnings = setup_warnings(&sender, Some(&domain), relay.is_some());
    println!();
    if warnings.is_empty() {
        println!("Configuration: no findings");
    } else {
        println!("Configuration: {} finding(s)", warnings.len());
        for w in &warnings {
            println!("  ! {}", w.message());
        }
        // Writing to the maildir is a choice (a test set-up), not a fault.
        problems += warnings.iter().filter(|w| **w != SetupWarning::NoRelay).count();
    }

    println!();
    println!("DNS records to publish for {domain}");
    let key = dkim_key_file(&cfg);
    match std::fs::read_to_string(&key) {
        Ok(pem) => match DkimSigner::from_pem(&pem, &d.dkim.selector, &domain) {
            Ok(signer) => {
                let (name, value) = signer.dns_record();
                println!("  DKIM   {name} TXT \"{value}\"");
            }
            Err(e) => {
                problems += 1;
                println!("  ! DKIM: the key in {} does not load: {e}", key.display());
            }
        },
        Err(_) => println!(
            "  DKIM   (no key yet: `missive serve` generates {} at its first start; run doctor again)",
            key.display()
        ),
    }
    let spf_host = d.smtp.as_ref().map_or("YOUR-RELAY", |s| s.host.as_str());
    println!("  SPF    {domain} TXT \"v=spf1 a:{spf_host} ~all\"   (or your relay's own include:)");
    println!("  DMARC  _dmarc.{domain} TXT \"v=DMARC1; p=none; rua=mailto:postmaster@{domain}\"");

    println!();
    match relay {
        None => println!("Relay: none configured (delivery.smtp)"),
        Some(relay) => match relay.check().await {
            Ok(()) => println!("Relay: answers, and accepts the configured TLS and login"),
            Err(e) => {
                problems += 1;
                println!("Relay: ! {e}");
            }
        },
    }
    println!();
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) to fix before sending real mail (above)");
    }
    println!("Ready to send.");
    Ok(())
}

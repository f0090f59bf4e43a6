//! The technician's printer check on the device: `gavel-agent printer status|test`.
//!
//! Asks the receipt printer of the profile's `[capabilities.printer]` (or a port given on
//! the command line) for its real-time status, and prints a test page. Every failure says
//! what is wrong in the technician's terms: the port is missing, cannot be opened, the
//! printer does not answer, is offline, or is out of paper.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use gavel_devices::escpos::{self, Encoding, Printer, PrinterError, PrinterStatus};
use gavel_devices::serial::{PortSettings, SerialError};
use gavel_profile::Profile;

/// The printer to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Serial port.
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// Characters per line.
    pub columns: u16,
    /// Text encoding.
    pub encoding: Encoding,
}

/// The printer of `profile`, with the port and baud rate overridden when given.
pub fn target(
    profile: Option<&Profile>,
    port: Option<&str>,
    baud: Option<u32>,
) -> anyhow::Result<Target> {
    let settings = profile.and_then(|p| p.capabilities.printer.as_ref());
    let Some(port) = port
        .map(str::to_owned)
        .or_else(|| settings.map(|s| s.port.clone()))
    else {
        bail!(
            "this device's profile{} has no [capabilities.printer]: name the port with --port",
            profile
                .map(|p| format!(" ({})", p.name))
                .unwrap_or_default()
        );
    };
    let encoding = match settings {
        Some(s) => s
            .encoding
            .parse()
            .map_err(|e: String| anyhow::anyhow!(e))
            .context("capabilities.printer.encoding")?,
        None => Encoding::Gb18030,
    };
    Ok(Target {
        port,
        baud: baud.or(settings.map(|s| s.baud)).unwrap_or(19200),
        columns: settings.map_or(42, |s| s.columns),
        encoding,
    })
}

/// Turns a printer error into what a technician should check.
fn explain(t: &Target, e: PrinterError) -> anyhow::Error {
    let port = &t.port;
    match e {
        PrinterError::PaperOut(_) => {
            anyhow::anyhow!("printer on {port} is out of paper: load a new roll")
        }
        PrinterError::Offline(_) => anyhow::anyhow!(
            "printer on {port} is offline: close the cover, clear any paper jam or cutter error, then try again"
        ),
        PrinterError::Serial(SerialError::Timeout {
            waited,
            garbage_bytes,
            ..
        }) if garbage_bytes > 0 => anyhow::anyhow!(
            "printer on {port} answers with garbage ({garbage_bytes} bytes in {waited:?}): is the baud rate {} right?",
            t.baud
        ),
        PrinterError::Serial(SerialError::Timeout { waited, .. }) => anyhow::anyhow!(
            "printer on {port} does not answer status requests within {waited:?}: is it switched on and its cable connected, at {} baud?",
            t.baud
        ),
        PrinterError::Serial(
            e @ (SerialError::Open { .. } | SerialError::Backoff { .. } | SerialError::Lost { .. }),
        ) => {
            anyhow::anyhow!(
                "cannot use the printer port {port}: {e} (is the agent's user in the dialout group, and no other program using the port?)"
            )
        }
    }
}

fn open(t: &Target) -> anyhow::Result<Printer> {
    if !Path::new(&t.port).exists() {
        bail!(
            "printer port {} does not exist: is the printer (or its USB serial adapter) plugged in? Check capabilities.printer.port",
            t.port
        );
    }
    let mut p = Printer::new(PortSettings::new(&t.port, t.baud));
    p.timeout = Duration::from_secs(1);
    Ok(p)
}

/// Asks the printer's status (blocking); an offline printer or one without paper is an
/// error.
pub fn status(t: &Target) -> anyhow::Result<PrinterStatus> {
    let mut p = open(t)?;
    let s = p.status().map_err(|e| explain(t, e))?;
    if !s.online {
        return Err(explain(t, PrinterError::Offline(t.port.clone())));
    }
    if !s.paper {
        return Err(explain(t, PrinterError::PaperOut(t.port.clone())));
    }
    Ok(s)
}

/// One line describing a healthy printer.
pub fn describe(t: &Target, s: &PrinterStatus) -> String {
    format!(
        "printer on {} at {} baud: online, paper {}; {} columns, {}",
        t.port,
        t.baud,
        if s.paper_low { "running low" } else { "ok" },
        t.columns,
        t.encoding
    )
}

/// Prints the test page (blocking), after the same checks as [`status`].
pub fn test_page(t: &Target, device: &str) -> anyhow::Result<PrinterStatus> {
    let mut p = open(t)?;
    let receipt = escpos::test_receipt(
        device,
        &t.port,
        t.encoding,
        t.columns,
        time::OffsetDateTime::now_utc(),
    );
    p.print(receipt).map_err(|e| explain(t, e))?;
    // Status again after printing: the page used paper.
    let s = p.status().map_err(|e| explain(t, e))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_port_is_named_with_what_to_check() {
        let t = Target {
            port: "/dev/gavel-no-such-printer".into(),
            baud: 19200,
            columns: 42,
            encoding: Encoding::Gb18030,
        };
        let err = status(&t).expect_err("no port").to_string();
        assert!(
            err.contains("/dev/gavel-no-such-printer does not exist"),
            "{err}"
        );
        assert!(err.contains("plugged in"), "{err}");
    }

    #[test]
    fn a_profile_without_a_printer_asks_for_a_port() {
        let err = target(None, None, None)
            .expect_err("no printer")
            .to_string();
        assert!(err.contains("--port"), "{err}");
        let t = target(None, Some("/dev/ttyS0"), Some(9600)).expect("port given");
        assert_eq!((t.port.as_str(), t.baud), ("/dev/ttyS0", 9600));
    }
}

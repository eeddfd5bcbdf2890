//! `uvs trace` against a running director: one line per forwarded packet with the
//! headers before and after, filtered, bounded by --count, and written to pcap.

mod common;
use common::*;

#[test]
fn trace_streams_forwarded_packets_and_writes_pcap() {
    require_root!();
    let mut lvs = dr("trace");
    lvs.start_director(
        "-A -t 10.77.0.100:80 -s rr\n-a -t 10.77.0.100:80 -r 10.77.0.11:80 -g\n-a -t 10.77.0.100:80 -r 10.77.0.12:80 -g\n",
        &["--workers", "2"],
    )
    .unwrap();
    let out = std::env::temp_dir().join(format!("{}-trace.txt", lvs.bed.prefix));
    let pcap = std::env::temp_dir().join(format!("{}-trace.pcap", lvs.bed.prefix));
    let ctl = lvs.control_path().to_string_lossy().to_string();
    let p = pcap.to_string_lossy().to_string();
    let f = std::fs::File::create(&out).unwrap();
    let pid = lvs
        .bed
        .spawn(
            "dir",
            &[
                UVS,
                "trace",
                "--control",
                &ctl,
                "--service",
                "10.77.0.100:80",
                "--count",
                "6",
                "--pcap",
                &p,
            ],
            Some(f),
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let names = lvs.http_names(4);
    assert!(names.iter().all(|n| n == "rs1" || n == "rs2"), "{names:?}");
    let lines = wait_for_lines(&out, 5, |l| l.len() >= 6);
    lvs.bed.stop(pid);
    assert_eq!(lines.len(), 6, "--count bounds the trace: {lines:?}");
    for l in &lines {
        assert!(
            l.starts_with("TCP 10.77.0.100:80 rs 10.77.0.1") && l.contains(" DR: "),
            "{l}"
        );
        let (before, after) = l.split_once(" => ").unwrap();
        assert!(
            before.contains(&format!("> {}", lvs.director_mac)),
            "received for the director: {l}"
        );
        assert!(after.starts_with(&lvs.director_mac), "sent from the director: {l}");
        assert!(after.contains("> 10.77.0.100:80"), "IP destination kept: {l}");
    }
    let frames = uvs::lab::hops::read_pcap(&pcap);
    assert_eq!(frames.len(), 12, "received and sent frame of each traced packet");
    let _ = std::fs::remove_file(&pcap);
    // A tracer that went away detaches: the director keeps forwarding.
    assert!(lvs.http_names(2).iter().all(|n| n == "rs1" || n == "rs2"));
}

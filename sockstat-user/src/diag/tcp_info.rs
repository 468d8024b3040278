//! `struct tcp_info` (include/uapi/linux/tcp.h) from INET_DIAG_INFO. The kernel only ever
//! appends fields, so a shorter reply is zero-padded and a longer one truncated, as ss does.

/// Bytes of `struct tcp_info` this build knows (up to `tcpi_rehash`).
pub const KNOWN_LEN: usize = 240;

pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
pub const TCPI_OPT_SACK: u8 = 2;
pub const TCPI_OPT_WSCALE: u8 = 4;
pub const TCPI_OPT_ECN: u8 = 8;
pub const TCPI_OPT_ECN_SEEN: u8 = 16;
pub const TCPI_OPT_SYN_DATA: u8 = 32;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: u8,
    pub ca_state: u8,
    pub retransmits: u8,
    pub probes: u8,
    pub backoff: u8,
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    pub delivery_rate_app_limited: bool,
    pub rto: u32,
    pub ato: u32,
    pub snd_mss: u32,
    pub rcv_mss: u32,
    pub unacked: u32,
    pub sacked: u32,
    pub lost: u32,
    pub retrans: u32,
    pub fackets: u32,
    pub last_data_sent: u32,
    pub last_ack_sent: u32,
    pub last_data_recv: u32,
    pub last_ack_recv: u32,
    pub pmtu: u32,
    pub rcv_ssthresh: u32,
    pub rtt: u32,
    pub rttvar: u32,
    pub snd_ssthresh: u32,
    pub snd_cwnd: u32,
    pub advmss: u32,
    pub reordering: u32,
    pub rcv_rtt: u32,
    pub rcv_space: u32,
    pub total_retrans: u32,
    pub pacing_rate: u64,
    pub max_pacing_rate: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub segs_out: u32,
    pub segs_in: u32,
    pub notsent_bytes: u32,
    pub min_rtt: u32,
    pub data_segs_in: u32,
    pub data_segs_out: u32,
    pub delivery_rate: u64,
    pub busy_time: u64,
    pub rwnd_limited: u64,
    pub sndbuf_limited: u64,
    pub delivered: u32,
    pub delivered_ce: u32,
    pub bytes_sent: u64,
    pub bytes_retrans: u64,
    pub dsack_dups: u32,
    pub reord_seen: u32,
    pub rcv_ooopack: u32,
    pub snd_wnd: u32,
    pub rcv_wnd: u32,
    pub rehash: u32,
}

impl TcpInfo {
    pub fn parse(raw: &[u8]) -> Self {
        let mut b = [0u8; KNOWN_LEN];
        let n = raw.len().min(KNOWN_LEN);
        b[..n].copy_from_slice(&raw[..n]);
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(x)
        };
        TcpInfo {
            state: b[0],
            ca_state: b[1],
            retransmits: b[2],
            probes: b[3],
            backoff: b[4],
            options: b[5],
            // Bitfields: snd_wscale is the low nibble on little-endian targets.
            snd_wscale: b[6] & 0x0f,
            rcv_wscale: b[6] >> 4,
            delivery_rate_app_limited: b[7] & 1 != 0,
            rto: u32_at(8),
            ato: u32_at(12),
            snd_mss: u32_at(16),
            rcv_mss: u32_at(20),
            unacked: u32_at(24),
            sacked: u32_at(28),
            lost: u32_at(32),
            retrans: u32_at(36),
            fackets: u32_at(40),
            last_data_sent: u32_at(44),
            last_ack_sent: u32_at(48),
            last_data_recv: u32_at(52),
            last_ack_recv: u32_at(56),
            pmtu: u32_at(60),
            rcv_ssthresh: u32_at(64),
            rtt: u32_at(68),
            rttvar: u32_at(72),
            snd_ssthresh: u32_at(76),
            snd_cwnd: u32_at(80),
            advmss: u32_at(84),
            reordering: u32_at(88),
            rcv_rtt: u32_at(92),
            rcv_space: u32_at(96),
            total_retrans: u32_at(100),
            pacing_rate: u64_at(104),
            max_pacing_rate: u64_at(112),
            bytes_acked: u64_at(120),
            bytes_received: u64_at(128),
            segs_out: u32_at(136),
            segs_in: u32_at(140),
            notsent_bytes: u32_at(144),
            min_rtt: u32_at(148),
            data_segs_in: u32_at(152),
            data_segs_out: u32_at(156),
            delivery_rate: u64_at(160),
            busy_time: u64_at(168),
            rwnd_limited: u64_at(176),
            sndbuf_limited: u64_at(184),
            delivered: u32_at(192),
            delivered_ce: u32_at(196),
            bytes_sent: u64_at(200),
            bytes_retrans: u64_at(208),
            dsack_dups: u32_at(216),
            reord_seen: u32_at(220),
            rcv_ooopack: u32_at(224),
            snd_wnd: u32_at(228),
            rcv_wnd: u32_at(232),
            rehash: u32_at(236),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_replies_are_zero_padded() {
        let mut raw = vec![0u8; 104];
        raw[0] = 1;
        raw[6] = 0x97; // snd_wscale 7, rcv_wscale 9
        raw[68..72].copy_from_slice(&40u32.to_ne_bytes());
        let info = TcpInfo::parse(&raw);
        assert_eq!(info.state, 1);
        assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 9));
        assert_eq!(info.rtt, 40);
        assert_eq!(info.bytes_acked, 0);
        let long = vec![0xffu8; 400];
        assert_eq!(TcpInfo::parse(&long).rehash, u32::MAX);
    }
}

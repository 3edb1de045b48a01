//! Table definitions shared by both backends. They mirror `migrations/sqlite` and
//! `migrations/postgres`, which differ only in types the two engines spell differently.

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        disabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        state -> Text,
        expires_at -> BigInt,
        user_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        token_hash -> Text,
        role -> Text,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        last_used_at -> Nullable<BigInt>,
        revoked -> Bool,
        creator_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        outcome -> Text,
        details -> Text,
    }
}

diesel::table! {
    endpoints (id) {
        id -> BigInt,
        mac -> Nullable<Text>,
        mac_vendor -> Text,
        ip -> Text,
        hostname -> Text,
        fqdn -> Text,
        os_name -> Text,
        os_version -> Text,
        os_build -> Text,
        dhcp_vendor_class -> Text,
        dhcp_params -> Text,
        user_agent -> Text,
        profile -> Text,
        match_score -> SmallInt,
        risk_level -> SmallInt,
        sources -> Text,
        custom_data -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        other_profiles -> Text,
        profile_reason -> Text,
    }
}

diesel::table! {
    endpoint_ips (endpoint_id, ip) {
        endpoint_id -> BigInt,
        ip -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    endpoint_sources (endpoint_id, source) {
        endpoint_id -> BigInt,
        source -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
    }
}

diesel::table! {
    endpoint_history (id) {
        id -> BigInt,
        endpoint_id -> BigInt,
        at -> BigInt,
        field -> Text,
        old_value -> Text,
        new_value -> Text,
        source -> Text,
    }
}

diesel::table! {
    profiles (id) {
        id -> BigInt,
        name -> Text,
        owner -> Text,
        category -> Text,
        description -> Text,
        enabled -> Bool,
        created_at -> BigInt,
    }
}

diesel::table! {
    profile_assignments (endpoint_id, profile_id) {
        endpoint_id -> BigInt,
        profile_id -> BigInt,
        score -> SmallInt,
    }
}

diesel::table! {
    risk_factors (endpoint_id, source) {
        endpoint_id -> BigInt,
        source -> Text,
        level -> SmallInt,
        summary -> Text,
        details -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        at -> BigInt,
        endpoint_id -> Nullable<BigInt>,
        kind -> Text,
        message -> Text,
        data -> Text,
        txid -> BigInt,
    }
}

diesel::table! {
    destinations (id) {
        id -> BigInt,
        name -> Text,
        kind -> Text,
        url -> Text,
        secret_ciphertext -> Nullable<Binary>,
        event_types -> Text,
        min_level -> SmallInt,
        enabled -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
        cursor_txid -> BigInt,
        cursor_id -> BigInt,
        ca_pem -> Text,
        format -> Text,
    }
}

diesel::table! {
    deliveries (id) {
        id -> BigInt,
        destination_id -> BigInt,
        event_id -> Nullable<BigInt>,
        at -> BigInt,
        attempt -> Integer,
        status -> Text,
        detail -> Text,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        kind -> Text,
        status -> Text,
        done -> BigInt,
        total -> BigInt,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
        requested_by -> Text,
        message -> Text,
    }
}

diesel::table! {
    app_settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    integration_config (name) {
        name -> Text,
        tenant_id -> Text,
        client_id -> Text,
        secret_ciphertext -> Nullable<Binary>,
        cloud -> Text,
        region -> Text,
        login_base_url -> Text,
        api_base_url -> Text,
        enabled -> Bool,
        sync_interval_minutes -> Integer,
        updated_at -> BigInt,
        updated_by -> Text,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> BigInt,
        integration -> Text,
        trigger -> Text,
        requested_by -> Text,
        status -> Text,
        phase -> Text,
        items_done -> BigInt,
        items_total -> BigInt,
        machines -> BigInt,
        created -> BigInt,
        updated -> BigInt,
        merged -> BigInt,
        stale -> BigInt,
        api_calls -> BigInt,
        throttled -> BigInt,
        error -> Text,
        started_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    defender_machines (machine_id) {
        machine_id -> Text,
        endpoint_id -> Nullable<BigInt>,
        computer_dns_name -> Text,
        os_platform -> Text,
        os_version -> Text,
        os_build -> Text,
        agent_version -> Text,
        onboarding_status -> Text,
        health_status -> Text,
        risk_score -> Text,
        exposure_level -> Text,
        last_ip -> Text,
        macs -> Text,
        first_seen -> BigInt,
        last_seen -> BigInt,
        rbac_group -> Text,
        tags -> Text,
        vuln_count -> Integer,
        top_vuln_cve -> Text,
        top_vuln_severity -> SmallInt,
        top_vuln_description -> Text,
        top_alert_id -> Text,
        top_alert_severity -> SmallInt,
        top_alert_title -> Text,
        isolated -> Bool,
        stale -> Bool,
        stale_reason -> Text,
        match_note -> Text,
        content_hash -> Text,
        updated_at -> BigInt,
        vuln_rows -> Text,
        isolation -> Text,
    }
}

diesel::table! {
    defender_sync_staging (seq) {
        seq -> BigInt,
        machine_id -> Text,
        mac_key -> Text,
        name_key -> Text,
        merged_into -> Text,
        record -> Text,
        last_seen -> BigInt,
    }
}

diesel::table! {
    defender_sync_vulnerabilities (seq, ord) {
        seq -> BigInt,
        ord -> BigInt,
        cve -> Integer,
        fixed -> Bool,
        software -> Integer,
        event_ms -> BigInt,
        rbac_group -> Text,
    }
}

diesel::table! {
    defender_sync_alerts (seq, alert_id) {
        seq -> BigInt,
        alert_id -> Text,
        level -> SmallInt,
        updated_ms -> Nullable<BigInt>,
        title -> Text,
    }
}

diesel::table! {
    machine_actions (id) {
        id -> BigInt,
        idempotency_key -> Text,
        endpoint_id -> BigInt,
        machine_id -> Text,
        action_type -> Text,
        scope -> Text,
        comment -> Text,
        requested_by -> Text,
        status -> Text,
        defender_action_id -> Text,
        error -> Text,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        updated_at -> BigInt,
        polled_at -> BigInt,
        answered_action_id -> Text,
    }
}

diesel::table! {
    sso_config (name) {
        name -> Text,
        tenant_id -> Text,
        client_id -> Text,
        secret_ciphertext -> Nullable<Binary>,
        authority -> Text,
        redirect_uri -> Text,
        admin_values -> Text,
        operator_values -> Text,
        analyst_values -> Text,
        enabled -> Bool,
        updated_at -> BigInt,
        updated_by -> Text,
    }
}

diesel::table! {
    user_identities (provider, tenant_id, object_id) {
        provider -> Text,
        tenant_id -> Text,
        object_id -> Text,
        user_id -> BigInt,
        created_at -> BigInt,
        last_login_at -> BigInt,
    }
}

diesel::joinable!(user_identities -> users (user_id));
diesel::joinable!(machine_actions -> endpoints (endpoint_id));
diesel::joinable!(defender_machines -> endpoints (endpoint_id));
diesel::joinable!(profile_assignments -> endpoints (endpoint_id));
diesel::joinable!(profile_assignments -> profiles (profile_id));
diesel::joinable!(risk_factors -> endpoints (endpoint_id));
diesel::joinable!(endpoint_ips -> endpoints (endpoint_id));
diesel::joinable!(endpoint_sources -> endpoints (endpoint_id));
diesel::joinable!(endpoint_history -> endpoints (endpoint_id));

diesel::table! {
    login_failures (key) {
        key -> Text,
        failures -> Integer,
        last_at -> BigInt,
        wait_until_ms -> BigInt,
    }
}

diesel::table! {
    defender_machine_tags (machine_id, tag) {
        machine_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    response_rules (id) {
        id -> BigInt,
        name -> Text,
        condition -> Text,
        action -> Text,
        requires_approval -> Bool,
        cooldown_minutes -> Integer,
        enabled -> Bool,
        author -> Text,
        editors -> Text,
        version -> Integer,
        dry_run_at -> Nullable<BigInt>,
        dry_run_count -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    rule_decisions (id) {
        id -> BigInt,
        rule_id -> BigInt,
        rule_version -> Integer,
        endpoint_id -> BigInt,
        state -> Text,
        matched -> Text,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        decided_at -> Nullable<BigInt>,
        decided_by -> Text,
        reason -> Text,
        sent_at -> Nullable<BigInt>,
        action_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    coverage_gaps (endpoint_id) {
        endpoint_id -> BigInt,
        kind -> Text,
        detail -> Text,
        since -> BigInt,
    }
}

diesel::joinable!(coverage_gaps -> endpoints (endpoint_id));
diesel::joinable!(deliveries -> destinations (destination_id));

diesel::table! {
    risk_history (endpoint_id, day) {
        endpoint_id -> BigInt,
        day -> Integer,
        risk -> SmallInt,
        exposure -> SmallInt,
        alert -> SmallInt,
        vulns -> Integer,
        why -> Text,
    }
}

diesel::joinable!(risk_history -> endpoints (endpoint_id));

diesel::table! {
    risk_day_counts (day) {
        day -> Integer,
        none_count -> BigInt,
        low_count -> BigInt,
        medium_count -> BigInt,
        high_count -> BigInt,
        critical_count -> BigInt,
    }
}

diesel::table! {
    profile_defender_tags (profile) {
        profile -> Text,
        tag -> Text,
        updated_by -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    defender_tags_written (machine_id, tag) {
        machine_id -> Text,
        tag -> Text,
        source -> Text,
        written_by -> Text,
        written_at -> BigInt,
    }
}

diesel::table! {
    defender_tag_calls (id) {
        id -> BigInt,
        machine_id -> Text,
        tag -> Text,
        action -> Text,
        outcome -> Text,
        at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    users,
    sessions,
    api_tokens,
    audit_log,
    endpoints,
    endpoint_ips,
    endpoint_sources,
    endpoint_history,
    profiles,
    profile_assignments,
    risk_factors,
    events,
    jobs,
    app_settings,
    integration_config,
    sync_runs,
    defender_machines,
    defender_sync_staging,
    defender_sync_vulnerabilities,
    defender_sync_alerts,
    machine_actions,
    sso_config,
    user_identities,
    login_failures,
    coverage_gaps,
    defender_machine_tags,
    response_rules,
    rule_decisions,
    risk_history,
    risk_day_counts,
    destinations,
    deliveries,
    profile_defender_tags,
    defender_tags_written,
    defender_tag_calls,
);
